"""Letter and word error rates, and the Levenshtein alignment they and alignment quality share."""

import collections
from typing import Iterable, Mapping, Sequence

import numpy as np


def edit_table(ref: Sequence, hyp: Sequence) -> list[list[int]]:
  """Levenshtein table: entry [i][j] is the distance of `ref[:i]` and `hyp[:j]` (unit costs)."""
  table = [list(range(len(hyp) + 1))]
  for i, r in enumerate(ref, 1):
    prev, cur = table[-1], [i] + [0] * len(hyp)
    for j, h in enumerate(hyp, 1):
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
    table.append(cur)
  return table


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
  """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
  return edit_table(ref, hyp)[-1][-1]


def align(hyp: Sequence, ref: Sequence) -> np.ndarray:
  """Index of the `ref` element aligned to each `hyp` element (-1: an insertion).

  Levenshtein alignment with unit costs; on ties the backtrace prefers the diagonal (match or
  substitution), then a deletion (reference element skipped), then an insertion.
  """
  cost = edit_table(hyp, ref)
  ref_of = np.full(len(hyp), -1, np.int64)
  i, j = len(hyp), len(ref)
  while i > 0:
    if j > 0 and cost[i][j] == cost[i - 1][j - 1] + (hyp[i - 1] != ref[j - 1]):
      ref_of[i - 1] = j - 1
      i, j = i - 1, j - 1
    elif j > 0 and cost[i][j] == cost[i][j - 1] + 1:
      j -= 1
    else:
      i -= 1
  return ref_of


def edit_counts(ref: Sequence, hyp: Sequence) -> dict[str, int]:
  """Substitutions, deletions and insertions of `align`'s alignment of `hyp` to `ref` (they sum
  to the edit distance)."""
  ref_of = align(hyp, ref)
  matched = ref_of >= 0
  return {'substitutions': int(sum(hyp[i] != ref[ref_of[i]] for i in np.flatnonzero(matched))),
          'deletions': len(ref) - int(matched.sum()), 'insertions': int((~matched).sum())}


def pair_counts(ref: str, hyp: str) -> dict[str, int]:
  """What every rate of one reference/hypothesis pair is made of, from one alignment of its
  letters: the letter edits by kind (`edit_counts`), letter and word errors, letters and words
  (of the reference). Rates of any group of pairs are sums of these (`rates_of`)."""
  edits = edit_counts(ref, hyp)
  return dict(edits, letter_errors=sum(edits.values()), letters=len(ref),
              word_errors=edit_distance(ref.split(), hyp.split()), words=len(ref.split()))


def rates_of(counts: Iterable[Mapping[str, int]]) -> dict[str, float]:
  """Letter and word error rate of the pairs whose `pair_counts` these are."""
  total = collections.Counter()
  for c in counts:
    total.update(c)
  return {'ler': total['letter_errors'] / max(total['letters'], 1),
          'wer': total['word_errors'] / max(total['words'], 1)}


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
  """Corpus-level letter error rate (over characters, spaces included) and word error rate."""
  if len(refs) != len(hyps):
    raise ValueError(f'{len(refs)} references but {len(hyps)} hypotheses')
  return rates_of(pair_counts(r, h) for r, h in zip(refs, hyps))
