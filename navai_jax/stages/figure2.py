"""Figure 2: sensitivity and LRP of frames predicted as a letter (paper §4.2)."""

import json
import os
from typing import Any, Optional

import ml_collections
import numpy as np

from navai_jax.introspection import attribution
from navai_jax.introspection import frames
from navai_jax.outputs import figures
from navai_jax.recognizer import features
from navai_jax.recognizer import vocab
from navai_jax.stages import common

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        split: str, letter: str, num_frames: int = 2, utterance: Optional[str] = None,
        lrp_rule: str = 'paper', output: str = 'softmax',
        max_utterances: int = 0) -> dict[str, np.ndarray]:
  """Figure 2: sensitivity (paper eq. 1) and LRP (eqs. 3-4) of frames predicted as `letter`.

  Takes the first frame of the letter in each utterance in data order (all frames of
  `utterance` when it is given) until `num_frames` are found, and writes
  `figure2_LETTER.png` (rows: spectrogram, sensitivity overlay, LRP overlay) and
  `figure2_LETTER.npz` (windows, maps, utterance ids, positions, probabilities) into `out_dir`.
  """
  common.start(config, out_dir)
  found = frames.find_letter(config, variables,
                             common.feature_batches(config, split, max_utterances), letter,
                             num_frames, utterance=utterance)
  targets_N = np.full(len(found), vocab.letter_id(letter))
  result = {
      'windows': found.windows_NxWxF,
      'sensitivity': np.asarray(attribution.attribute('sensitivity', config, variables,
                                                      found.windows_NxWxF, targets_N,
                                                      output=output)),
      'lrp': np.asarray(attribution.attribute('lrp', config, variables, found.windows_NxWxF,
                                              targets_N, rule=lrp_rule)),
      'ids': np.asarray(found.ids),
      'positions': found.positions_N,
      'probability': np.asarray(attribution.target_probability(config, variables,
                                                               found.windows_NxWxF, targets_N)),
  }
  os.makedirs(out_dir, exist_ok=True)
  rows = [f"'{letter}' p={p:.3f}, {u} @ {n}"
          for u, n, p in zip(result['ids'], result['positions'], result['probability'])]
  figures.overlay_grid(config, result['windows'],
                       {'sensitivity': result['sensitivity'], f'LRP ({lrp_rule})': result['lrp']},
                       rows, path=os.path.join(out_dir, f'figure2_{letter}.png'))
  common.savez(os.path.join(out_dir, f'figure2_{letter}.npz'), **result,
               mel_hz=features.mel_frequencies(config),
               meta=json.dumps({'letter': letter, 'split': split, 'checkpoint_step': step,
                                'lrp_rule': lrp_rule, 'output': output}))
  return result
