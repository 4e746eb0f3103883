"""How well each NAvAI alignment finds the letter, in milliseconds (SPEC §10).

With synthesized speech the true time of every word and phoneme is known (the corpus's
`.timing.json` files), so the paper's open question - does the alignment centre the frame on
the real occurrence of the letter? - gets a number. For every frame (an output position
predicted as a letter):

1. The greedy transcript is built with, for each output position, the character it emits
   (CTC: repeated tokens merge, blanks drop out; a repetition token `<k>` emits the previous
   character k more times).
2. The greedy transcript is aligned to the reference transcript character by character with a
   Levenshtein alignment (ties prefer match/substitution, then deletion, then insertion). A
   predicted letter aligned to a reference character - matched or substituted - stands for that
   spoken character; one aligned to nothing (an insertion) or to a space is *unmatched* and
   not scored.
3. The reference character's true time span:
   * letter level: a word's phonemes are those whose start lies in the word's
     [start, end) interval. The word's letters (a-z; apostrophes are skipped) and its phonemes
     are laid on a common axis by index, letter i of n covering [i/n, (i+1)/n) and phoneme j of
     k covering [j/k, (j+1)/k); a letter's span runs from the start of the first to the end of
     the last phoneme whose interval overlaps its own. So "cat" /k a t/ gives one phoneme per
     letter, and the silent "e" of "make" /m eI k/ shares "k" with the letter before it;
   * word level: the word's [start, end), used where the word has no phonemes or the
     character is an apostrophe.
   Which level was used is recorded per frame.
4. The aligned position in the utterance is `window_start + p` feature frames, at the time of
   that frame's window centre (`features.frame_to_seconds`). Its distance to the span is 0
   inside and the gap to the nearer end outside.

Scores are kept as histograms of 1-ms bins (0 ms exactly = inside the span), per method,
letter and level, so a pass over any number of frames needs constant memory and a resumed pass
continues them exactly. The reported median and 90th percentile are read from the histogram
(within 1 ms of the exact values); the share inside the span is exact.
"""

import csv
import io
import os
from typing import Sequence

import ml_collections
import numpy as np

from navai_jax.recognizer import features
from navai_jax.core import files
from navai_jax.training import error_rates
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

LEVELS = ('letter', 'word')
BIN_MS = 1.0
NUM_BINS = 3002  # bin 0: inside the span; bins 1..3000: (k-1, k] ms; bin 3001: beyond 3 s.


def greedy_characters(tokens_U: np.ndarray) -> tuple[str, np.ndarray]:
  """Greedy transcript and, per output position, the index of the character it emits.

  Positions that emit nothing (blanks, a repetition token with nothing before it) get -1; the
  positions of one run of a token all get the index of the run's character (for `<k>`, the
  last of its k characters).
  """
  token_G, run_U = vocab.ctc_runs(tokens_U)
  chars: list[str] = []
  char_of_G = np.full(token_G.shape, -1, np.int64)
  for g, token in enumerate(token_G.tolist()):
    if token == vocab.BLANK:
      continue
    name = vocab.TOKENS[token]
    if name in vocab.REPEATS:
      if chars:
        chars += [chars[-1]] * (vocab.REPEATS.index(name) + 1)
        char_of_G[g] = len(chars) - 1
    else:
      chars.append(name)
      char_of_G[g] = len(chars) - 1
  return ''.join(chars), char_of_G[run_U]


def character_spans(reference: str, timing: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """True time span (seconds) and level of every reference character (see module docstring).

  Args:
    reference: the normalized transcript (lower case, single spaces).
    timing: an utterance's `.timing.json` (`phoneme_times.read_timing`), whose 'words' must be the
      reference's words in order.
  Returns:
    `(start_R, end_R, level_R)`: level 0 = letter, 1 = word; spaces get NaN spans and level -1.
  """
  words = reference.split(' ')
  timed = [w['word'].lower() for w in timing['words']]
  if timed != words:
    raise ValueError(f'Timing of utterance {timing.get("id", "?")} lists the words {timed}, '
                     f'but its transcript is {reference!r}.')
  phonemes = timing['phonemes']
  start_R = np.full(len(reference), np.nan)
  end_R = np.full(len(reference), np.nan)
  level_R = np.full(len(reference), -1, np.int64)
  offset = 0
  for word, span in zip(words, timing['words']):
    own = [p for p in phonemes if span['start'] <= p['start'] < span['end']]
    letters = [i for i, c in enumerate(word) if c in vocab.LETTERS]
    n, k = len(letters), len(own)
    for i, c in enumerate(word):
      start_R[offset + i], end_R[offset + i], level_R[offset + i] = span['start'], span['end'], 1
    for rank, i in enumerate(letters):
      if not k:
        break
      # Phoneme j overlaps letter `rank` when j/k < (rank+1)/n and (j+1)/k > rank/n.
      first = (rank * k) // n
      last = -(-((rank + 1) * k) // n) - 1
      start_R[offset + i] = own[first]['start']
      end_R[offset + i] = own[last]['end']
      level_R[offset + i] = 0
    offset += len(word) + 1
  return start_R, end_R, level_R


def distance_ms(time_s: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
  """Milliseconds from `time_s` to the span [start_s, end_s]: 0 inside, else the gap."""
  time_s = np.asarray(time_s, np.float64)
  return 1000.0 * np.maximum(0.0, np.maximum(start_s - time_s, time_s - end_s))


def score_utterance(tokens_U: np.ndarray, positions_UxM: np.ndarray, reference: str,
                    timing: dict, config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Per-frame alignment scores of one utterance.

  Args:
    tokens_U: arg-max token of every output position.
    positions_UxM: alignment position p in [0, 206) per output position and method; -1 where
      the position is not a frame, or where that method's map of the frame is all zeros
      (then the frame is not scored under that method: its distance is NaN).
    reference: the normalized reference transcript.
    timing: the utterance's timing (`phoneme_times.read_timing`).
    config: the experiment config (model layers for window starts; feature hop and window).
  Returns:
    'position' [N] (the output position of each scored frame), 'letter' [N] (0..25, the
    predicted letter), 'level' [N] (0 letter, 1 word), 'distance_ms'
    [N, M], 'span_s' [N, 2], 'time_s' [N, M] for the N scored frames, and 'unmatched' [26]:
    frames per predicted letter whose character aligned to no spoken letter.
  """
  tokens_U = np.asarray(tokens_U)
  positions_UxM = np.asarray(positions_UxM)
  hypothesis, char_of_U = greedy_characters(tokens_U)
  ref_of = error_rates.align(hypothesis, reference)
  start_R, end_R, level_R = character_spans(reference, timing)
  frames_u = np.flatnonzero(positions_UxM.max(axis=1) >= 0)
  letter_N = tokens_U[frames_u] - vocab.LETTER_IDS[0]
  ref_N = ref_of[char_of_U[frames_u]]
  scored = ref_N >= 0
  scored[scored] = level_R[ref_N[scored]] >= 0
  unmatched = np.bincount(letter_N[~scored], minlength=vocab.NUM_LETTERS)
  frames_u, letter_N, ref_N = frames_u[scored], letter_N[scored], ref_N[scored]
  specs = model.layer_specs(config.model)
  start_N = np.asarray([model.window_start(specs, int(u)) for u in frames_u], np.int64)
  time_NxM = features.frame_to_seconds(start_N[:, None] + positions_UxM[frames_u], config)
  time_NxM = np.where(positions_UxM[frames_u] >= 0, time_NxM, np.nan)
  span_Nx2 = np.stack([start_R[ref_N], end_R[ref_N]], axis=1).reshape(-1, 2)
  return {'position': frames_u, 'letter': letter_N, 'level': level_R[ref_N], 'time_s': time_NxM,
          'span_s': span_Nx2,
          'distance_ms': distance_ms(time_NxM, span_Nx2[:, :1], span_Nx2[:, 1:]),
          'unmatched': unmatched}


# --- Streaming tallies and the report ---------------------------------------------------------


def empty_tally(num_methods: int) -> dict[str, np.ndarray]:
  """Histograms `[methods, 26 letters, 2 levels, NUM_BINS]` and unmatched counts `[26]`."""
  return {'histogram': np.zeros((num_methods, vocab.NUM_LETTERS, len(LEVELS), NUM_BINS), np.int64),
          'unmatched': np.zeros(vocab.NUM_LETTERS, np.int64)}


def distance_bins(distance_ms_: np.ndarray) -> np.ndarray:
  """Histogram bin of each distance: 0 inside the span, k for (k-1, k] ms, the last beyond."""
  d = np.asarray(distance_ms_)
  return np.where(d <= 0, 0, np.minimum(np.ceil(d / BIN_MS), NUM_BINS - 1)).astype(np.int64)


def add_to_tally(tally: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> None:
  """Adds one utterance's `score_utterance` result to `tally` (in place)."""
  num_methods = tally['histogram'].shape[0]
  if scores['distance_ms'].shape[1:] != (num_methods,):
    raise ValueError(f'Scores for {scores["distance_ms"].shape[1:]} methods, tally for '
                     f'{num_methods}.')
  bins_NxM = distance_bins(np.nan_to_num(scores['distance_ms']))
  for m in range(num_methods):
    has = ~np.isnan(scores['distance_ms'][:, m])
    np.add.at(tally['histogram'][m],
              (scores['letter'][has], scores['level'][has], bins_NxM[has, m]), 1)
  tally['unmatched'] += scores['unmatched']


def histogram_quantile(histogram: np.ndarray, q: float) -> float:
  """Quantile `q` of the distances (ms) of a `distance_bins` histogram; NaN when empty.

  Values inside a bin are taken as spread evenly over it, and ranks are interpolated as
  `np.quantile` does (so q = 0.5 averages the two middle values of an even count); the result
  is within BIN_MS of the exact quantile.
  """
  n = int(histogram.sum())
  if n == 0:
    return float('nan')
  cumulative = np.cumsum(histogram)

  def value(rank: int) -> float:
    b = int(np.searchsorted(cumulative, rank, side='right'))
    if b == 0:
      return 0.0
    below = cumulative[b - 1]
    return (b - 1) * BIN_MS + BIN_MS * (rank - below + 0.5) / histogram[b]

  position = (n - 1) * q
  low, fraction = int(np.floor(position)), position - np.floor(position)
  return (1 - fraction) * value(low) + fraction * value(min(low + 1, n - 1))


def quality_table(tally: dict[str, np.ndarray], methods: Sequence[str]) -> list[dict]:
  """Rows (method, letter or 'all', level or 'all', frames, median_ms, p90_ms, inside_share).

  median_ms and p90_ms: the median and the 90th percentile of the distance to the true span.
  """
  rows = []
  hist = tally['histogram']
  for m, method in enumerate(methods):
    for letter in ('all',) + tuple(vocab.LETTERS):
      per_level = hist[m].sum(0) if letter == 'all' else hist[m, vocab.LETTERS.index(letter)]
      for level in ('all',) + LEVELS:
        h = per_level.sum(0) if level == 'all' else per_level[LEVELS.index(level)]
        frames = int(h.sum())
        rows.append({'method': method, 'letter': letter, 'level': level, 'frames': frames,
                     'median_ms': histogram_quantile(h, 0.5),
                     'p90_ms': histogram_quantile(h, 0.9),
                     'inside_share': h[0] / frames if frames else float('nan')})
  return rows


def write_csv(rows: list[dict], path: str) -> None:
  """The table as CSV (distances rounded to 0.1 ms, shares to 0.0001), written atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic(path) as tmp, open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
      writer.writerow(dict(row, median_ms=round(row['median_ms'], 1),
                           p90_ms=round(row['p90_ms'], 1),
                           inside_share=round(row['inside_share'], 4)))


def markdown_report(rows: list[dict], tally: dict[str, np.ndarray],
                    methods: Sequence[str]) -> str:
  """Markdown: overall scores per method, then the median per letter and method."""
  by = {(r['method'], r['letter'], r['level']): r for r in rows}
  out = io.StringIO()
  out.write('| method | frames | median distance (ms) | 90th percentile (ms) | inside true span '
            '| letter-level spans |\n|---|---|---|---|---|---|\n')
  for method in methods:
    r = by[(method, 'all', 'all')]
    letter_level = by[(method, 'all', 'letter')]['frames'] / max(r['frames'], 1)
    inside = '-' if r['frames'] == 0 else f'{r["inside_share"]:.1%}'
    out.write(f'| {method} | {r["frames"]} | {_ms(r["median_ms"])} | {_ms(r["p90_ms"])} | '
              f'{inside} | {letter_level:.1%} |\n')
  out.write(f'\nUnmatched frames (predicted letter aligned to no spoken letter): '
            f'{int(tally["unmatched"].sum())}.\n\n')
  out.write('| letter | frames | ' + ' | '.join(f'{m} (ms)' for m in methods) + ' |\n')
  out.write('|---|---|' + '---|' * len(methods) + '\n')
  for letter in vocab.LETTERS:
    frames = by[(methods[0], letter, 'all')]['frames']
    medians = ' | '.join(_ms(by[(m, letter, 'all')]['median_ms']) for m in methods)
    out.write(f'| {letter} | {frames} | {medians} |\n')
  return out.getvalue()


def _ms(value: float) -> str:
  return '-' if np.isnan(value) else f'{value:.1f}'
