"""The frames the attribution suite scores: evenly spaced letter frames of a split, their
windows, targets and, where the corpus has phoneme times, the letter's true span."""

import dataclasses
import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from navai_jax.introspection import alignment_quality
from navai_jax.introspection import frames as frames_lib
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import data
from navai_jax.speech import phoneme_times

PyTree = Any


@dataclasses.dataclass
class EvalFrames:
  """The frames evaluated: windows, targets, and where known the letter's true span."""
  windows_NxWxF: np.ndarray
  targets_N: np.ndarray
  ids: list[str]
  positions_N: np.ndarray
  inside_NxW: np.ndarray  # window columns inside the true span of the letter
  has_span_N: np.ndarray  # False where no true span is known (no timing, unmatched letter)
  utterances: list[tuple[np.ndarray, int, str, list[int]]]  # (x_TxF, frames, text, frame rows)
  timed: bool  # whether the corpus has timing files for these utterances


def _spans(config, tokens_U, frame_positions, text, times):
  """Window-column masks `[n, W]` of the true spans of the frames at `frame_positions`."""
  specs = model.layer_specs(config.model)
  positions_UxM = np.full((len(tokens_U), 1), -1)
  positions_UxM[frame_positions, 0] = 0
  scores = alignment_quality.score_utterance(tokens_U, positions_UxM, text, times, config)
  masks = {}
  for u, (start_s, end_s) in zip(scores['position'], scores['span_s']):
    first = model.window_start(specs, int(u))
    time_W = features.frame_to_seconds(first + np.arange(model.RECEPTIVE_FIELD), config)
    masks[int(u)] = (time_W >= start_s) & (time_W <= end_s)
  return masks


@functools.lru_cache(maxsize=4)
def _frames_of_batch(config: ml_collections.FrozenConfigDict):
  """jit: (variables, audio_BxA, lengths_B) -> (x_BxTxF, frames_B, valid_BxU, tokens_BxU)."""
  def run(variables, audio_BxA, lengths_B):
    x_BxTxF, frames_B = features.log_mel(audio_BxA, lengths_B, config)
    logits, _ = model.apply_inference(config, variables, x_BxTxF, frames_B=frames_B)
    return (x_BxTxF, frames_B) + frames_lib.frame_mask(config, logits, frames_B)
  return jax.jit(run)


def collect_frames(config: ml_collections.ConfigDict, variables: PyTree) -> EvalFrames:
  """The frames of `config.attributions`: at most `max_frames`, evenly spaced over the frames of
  `max_utterances` evenly spaced utterances of `split`, with their true spans."""
  s = config.attributions
  timings = phoneme_times.find_timings(config, s.timing_dir)
  rows, utterances = [], []
  forward = _frames_of_batch(ml_collections.FrozenConfigDict(config))
  specs = model.layer_specs(config.model)
  for batch in data.batches(config, s.split, train=False, max_utterances=s.max_utterances):
    x_BxTxF, frames_B, valid, tokens = forward(variables, batch['audio'], batch['audio_lengths'])
    valid, tokens = np.asarray(valid), np.asarray(tokens)
    for b in np.flatnonzero(batch['weights'] > 0):
      utt_id, text = str(batch['id'][b]), str(batch['text'][b])
      positions = np.flatnonzero(valid[b])
      length = int(model.output_length(specs, int(frames_B[b])))
      masks = (_spans(config, tokens[b, :length], positions, text,
                       phoneme_times.read_timing(timings[utt_id])) if utt_id in timings else {})
      x_TxF = np.asarray(x_BxTxF[b, :int(frames_B[b])])
      first_row = len(rows)
      for u in positions:
        start = int(model.window_start(specs, int(u)))
        rows.append((x_TxF[start:start + model.RECEPTIVE_FIELD], int(u), int(tokens[b, u]),
                     utt_id, masks.get(int(u))))
      utterances.append((x_TxF, int(frames_B[b]), text, list(range(first_row, len(rows)))))
  if not rows:
    raise ValueError(f'No letter frames in split {s.split!r}: the model predicts no letter '
                     'whose receptive window lies inside an utterance.')
  keep = np.unique(np.linspace(0, len(rows) - 1, min(s.max_frames, len(rows))).round()
                   .astype(int))
  chosen = [rows[i] for i in keep]
  windows = np.stack([r[0] for r in chosen])
  inside = np.stack([m if m is not None else np.zeros(model.RECEPTIVE_FIELD, bool)
                     for *_, m in chosen])
  renumber = {old: new for new, old in enumerate(keep)}
  utterances = [(x, n, text, [renumber[r] for r in frame_rows if r in renumber])
                for x, n, text, frame_rows in utterances]
  return EvalFrames(windows, np.array([r[2] for r in chosen]), [r[3] for r in chosen],
                    np.array([r[1] for r in chosen]), inside,
                    np.array([r[4] is not None for r in chosen]), utterances,
                    any(u in timings for u in set(r[3] for r in rows)))
