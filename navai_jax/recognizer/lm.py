"""A token n-gram language model and CTC prefix beam search over it (beside SPEC §3's greedy
decoding, which stays the project's).

The model counts the CTC tokens of transcripts (letters, space, apostrophe and the repetition
tokens, as `vocab.encode` writes them) with interpolated Kneser-Ney smoothing (Chen & Goodman
1998, one discount for every order). Each transcript ends in `END`, and its first tokens see
`END`s before them. Probabilities are over the `vocab.SIZE` tokens that can follow a history:
every token but blank, and `END`.

The beam search (Hannun et al. 2014) keeps, for every prefix, the probability of its paths that
end in blank and of those that end in its last token, and scores a prefix by
`log P_ctc + alpha * log P_lm + beta * tokens`; at the end it adds `alpha * log P_lm(END)`.
"""

import collections
import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np

from navai_jax.recognizer import vocab

END = vocab.SIZE  # the end of a transcript (and what comes before its start)
# Probabilities kept for reuse; past this many the memo starts afresh, so that a long test set's
# search holds a bounded amount (about 200 MB) whatever it meets. Only speed depends on it.
MEMO_SIZE = 1 << 20


@dataclasses.dataclass(frozen=True)
class TokenLM:
  """Counts of an interpolated Kneser-Ney model (`fit`). For order k, `counts[k]` maps k-grams
  (tuples of token ids) to their counts at the highest order and to their continuation counts
  (how many tokens they follow) below it; `totals[k]` and `types[k]` map a (k-1)-token history
  to the sum of those counts and to how many tokens follow it."""
  order: int
  discount: float
  counts: tuple[dict, ...]
  totals: tuple[dict, ...]
  types: tuple[dict, ...]
  _memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def fit(transcripts: Iterable[Sequence[int]], order: int = 6, discount: float = 0.75) -> TokenLM:
  """A model of token sequences (`vocab.encode` of each transcript)."""
  if order < 1 or not 0 < discount < 1:
    raise ValueError(f'A language model needs order >= 1 and 0 < discount < 1, got {order} and '
                     f'{discount}.')
  raw = collections.Counter()
  for ids in transcripts:
    tokens = [END] * (order - 1) + [int(i) for i in ids] + [END]
    raw.update(tuple(tokens[i - order + 1:i + 1]) for i in range(order - 1, len(tokens)))
  if not raw:
    raise ValueError('A language model needs at least one transcript.')
  counts = [collections.Counter() for _ in range(order + 1)]
  counts[order] = raw
  for k in range(order - 1, 0, -1):  # continuation counts: the distinct tokens before a k-gram
    for gram in counts[k + 1]:
      counts[k][gram[1:]] += 1
  totals = [collections.Counter() for _ in range(order + 1)]
  types = [collections.Counter() for _ in range(order + 1)]
  for k in range(1, order + 1):
    for gram, count in counts[k].items():
      totals[k][gram[:-1]] += count
      types[k][gram[:-1]] += 1
  return TokenLM(order, discount, *(tuple(dict(t) for t in table)
                                    for table in (counts, totals, types)))


def _prob(lm: TokenLM, history: tuple, token: int, k: int) -> float:
  if k == 0:
    return 1.0 / vocab.SIZE
  history = history[len(history) - k + 1:] if k > 1 else ()
  key = (history, token, k)
  if key not in lm._memo:
    lower = _prob(lm, history, token, k - 1)
    total = lm.totals[k].get(history, 0)
    if total:
      count = lm.counts[k].get(history + (token,), 0)
      lower = (max(count - lm.discount, 0) + lm.discount * lm.types[k][history] * lower) / total
    if len(lm._memo) >= MEMO_SIZE:
      lm._memo.clear()
    lm._memo[key] = lower
  return lm._memo[key]


def log_prob(lm: TokenLM, history: Sequence[int], token: int) -> float:
  """log P(token | the tokens of `history`, the transcript so far)."""
  padded = (END,) * (lm.order - 1) + tuple(int(i) for i in history)
  return math.log(_prob(lm, padded[len(padded) - lm.order + 1:] if lm.order > 1 else (),
                        int(token), lm.order))


def beam_search(logprobs_UxV: np.ndarray, lm: Optional[TokenLM] = None, *, alpha: float = 0.0,
                beta: float = 0.0, beam: int = 16, prune: float = -8.0,
                blank: int = vocab.BLANK) -> list[int]:
  """The best token sequence (CTC collapsed) of one utterance's log-probabilities.

  Args:
    logprobs_UxV: log-softmax of the output positions (the utterance's own, no padding).
    lm: a `fit` model of the same tokens, or None for none (alpha is then unused).
    alpha: weight of the model's log-probability.
    beta: added per token (against the model's preference for short transcripts).
    beam: prefixes kept after each position.
    prune: tokens whose log-probability at a position is below this are not tried there.
  """
  if beam < 1:
    raise ValueError(f'beam must be >= 1, got {beam}.')
  lm_score = (lambda prefix, token: 0.0) if lm is None else (
      lambda prefix, token: alpha * log_prob(lm, prefix, token))
  beams = {(): (0.0, -np.inf)}  # prefix -> (log P of paths ending in blank, in its last token)
  for row_V in np.asarray(logprobs_UxV, np.float64):
    tried = [int(v) for v in np.flatnonzero(row_V >= prune) if v != blank]
    grown = collections.defaultdict(lambda: [-np.inf, -np.inf])
    for prefix, (p_blank, p_last) in beams.items():
      p_all = np.logaddexp(p_blank, p_last)
      here = grown[prefix]
      here[0] = np.logaddexp(here[0], p_all + row_V[blank])
      for token in tried:
        if prefix and token == prefix[-1]:  # the same token again: the prefix, or a new one
          here[1] = np.logaddexp(here[1], p_last + row_V[token])
          before = p_blank
        else:
          before = p_all
        if before == -np.inf:
          continue
        longer = grown[prefix + (token,)]
        longer[1] = np.logaddexp(longer[1],
                                 before + row_V[token] + lm_score(prefix, token) + beta)
    kept = sorted(grown.items(), key=lambda item: -np.logaddexp(*item[1]))[:beam]
    beams = {prefix: tuple(p) for prefix, p in kept}
  best = max(beams, key=lambda prefix: np.logaddexp(*beams[prefix]) + lm_score(prefix, END))
  return list(best)
