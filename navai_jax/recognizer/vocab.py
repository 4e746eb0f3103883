"""Letters, repetition tokens and greedy CTC decoding (SPEC §3).

Token ids: 0 blank, 1 space, 2 apostrophe, 3..28 the letters a-z, then the wav2letter-style
repetition tokens: `<1>` (previous character once more) and `<2>` (twice more), so that
"abbccc" is written `a b <1> c <2>`.
"""

import string
from typing import Sequence

import numpy as np

BLANK = 0
LETTERS = string.ascii_lowercase  # The letter classes of NAvAI, in order.
NUM_LETTERS = len(LETTERS)
CHARACTERS = " '" + LETTERS
REPEATS = ('<1>', '<2>')
TOKENS = ('<blank>',) + tuple(CHARACTERS) + REPEATS
SIZE = len(TOKENS)
LETTER_IDS = tuple(range(3, 3 + NUM_LETTERS))  # Token ids of 'a'..'z'.
_ID = {t: i for i, t in enumerate(TOKENS)}


class UnspellableError(ValueError):
  """A transcript that is empty or holds characters outside the vocabulary."""


def normalize(text: str) -> str:
  """Lower case, single spaces; raises UnspellableError on anything outside the vocabulary."""
  text = ' '.join(text.lower().split())
  if not text:
    raise UnspellableError('empty transcript')
  bad = sorted(set(text) - set(CHARACTERS))
  if bad:
    raise UnspellableError(f'characters outside the vocabulary {bad!r} in {text!r}')
  return text


def encode(text: str) -> list[int]:
  """Token ids of a transcript; runs of a character become char + repetition token."""
  text = normalize(text)
  ids, i = [], 0
  while i < len(text):
    run = 1
    while i + run < len(text) and text[i + run] == text[i] and run < 1 + len(REPEATS):
      run += 1
    ids.append(_ID[text[i]])
    if run > 1:
      ids.append(_ID[REPEATS[run - 2]])
    i += run
  return ids


def ctc_length(ids: Sequence[int]) -> int:
  """Fewest CTC output positions that can emit `ids`: one per token, plus a blank between
  two equal neighbours."""
  ids = np.asarray(ids)
  return int(len(ids) + np.sum(ids[1:] == ids[:-1]))


def decode(ids: Sequence[int]) -> str:
  """Inverse of `encode` (blanks are skipped; a repetition token with nothing before is dropped)."""
  out: list[str] = []
  for i in ids:
    i = int(i)
    if i == BLANK:
      continue
    token = TOKENS[i]
    if token in REPEATS:
      if out:
        out.append(out[-1] * (REPEATS.index(token) + 1))
    else:
      out.append(token)
  return ''.join(out)


def transcript(ids: Sequence[int]) -> str:
  """`decode` as a transcript: words with one space between them, none at either end.

  A network's output may hold a space before its first word, after its last or two in a row;
  transcripts (and `normalize`d references) never do, so these would count as letter errors
  of nothing a reader sees. wav2letter trims a prediction's separators at either end before it
  counts edits too.
  """
  return ' '.join(decode(ids).split())


def ctc_runs(best_U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Greedy CTC's runs: the token of every run of equal ids, and the run of every position.

  Returns:
    `(token_R, run_U)`: `token_R[r]` is the id repeated in run r (blanks included);
    `run_U[u]` is the run that position u belongs to.
  """
  best_U = np.asarray(best_U)
  starts_U = np.ones(best_U.shape, bool)
  starts_U[1:] = best_U[1:] != best_U[:-1]
  return best_U[starts_U], np.cumsum(starts_U) - 1


def ctc_collapse(best_U: np.ndarray) -> list[int]:
  """Greedy CTC: merge repeated ids, then drop blanks."""
  return [int(i) for i in ctc_runs(best_U)[0] if i != BLANK]


def greedy_decode(logits_UxV: np.ndarray, length: int | None = None) -> str:
  """Transcript (`transcript`) from the arg-max token of each output position (first `length`
  positions)."""
  best = np.asarray(logits_UxV).argmax(-1)
  if length is not None:
    best = best[:length]
  return transcript(ctc_collapse(best))


def is_letter_name(letter: object) -> bool:
  """True for one of the letters 'a'..'z'."""
  return isinstance(letter, str) and len(letter) == 1 and letter in LETTERS


def letter_id(letter: str) -> int:
  """Token id of a letter 'a'..'z'; ValueError naming the value for anything else."""
  if not is_letter_name(letter):
    raise ValueError(f"{letter!r} is not a letter 'a'..'z'")
  return _ID[letter]


def is_letter(token_id: int) -> bool:
  """True for the token id of a letter a-z."""
  return LETTER_IDS[0] <= token_id <= LETTER_IDS[-1]


def letter_of(token_id: int) -> str:
  return TOKENS[token_id]
