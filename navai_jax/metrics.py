"""Letter and word error rates by edit distance."""

from typing import Sequence


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
  """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
  prev = list(range(len(hyp) + 1))
  for i, r in enumerate(ref, 1):
    cur = [i] + [0] * len(hyp)
    for j, h in enumerate(hyp, 1):
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
    prev = cur
  return prev[-1]


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
  """Corpus-level letter error rate (over characters, spaces included) and word error rate."""
  if len(refs) != len(hyps):
    raise ValueError(f'{len(refs)} references but {len(hyps)} hypotheses')
  letter_errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
  letters = sum(len(r) for r in refs)
  word_errors = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
  words = sum(len(r.split()) for r in refs)
  return {'ler': letter_errors / max(letters, 1), 'wer': word_errors / max(words, 1)}
