"""Figure 1: optimal inputs of the neurons most active on a frame of a letter (§4.1)."""

import json
import os
from typing import Any

import ml_collections
import numpy as np

from navai_jax.introspection import activation_max
from navai_jax.introspection import frames
from navai_jax.outputs import figures
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.stages import common

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        split: str, letter: str, high_layer: int = 11, frame_index: int = 0,
        max_utterances: int = 0) -> tuple[frames.Frames, dict]:
  """Figure 1: AM (settings `config.am`) of the neurons most active on a frame of `letter`.

  Finds the `frame_index`-th frame of the split predicted as `letter` (data order), picks per
  layer the neuron most active on it (paper §4.1), optimizes the input of the neurons of layer
  1, layer 2, `high_layer` and the letter's output neuron, and writes `figure1_LETTER.png` and
  `figure1_LETTER.npz` into `out_dir`.

  Returns:
    The frame, and `{layer: (channel, AMResult)}`.
  """
  common.start(config, out_dir)
  output_layer = len(model.layer_specs(config.model))
  if not 2 < high_layer < output_layer:
    raise ValueError(f'high_layer must be between 3 and {output_layer - 1}, got {high_layer}.')
  frame = frames.find_letter(config, variables,
                             common.feature_batches(config, split, max_utterances), letter, 1,
                             skip=frame_index, first_per_utterance=False)
  layers = (1, 2, high_layer, output_layer)
  results = activation_max.optimal_inputs_for_letter(config, variables, frame.windows_NxWxF[0],
                                                     letter, layers, config.am)
  os.makedirs(out_dir, exist_ok=True)
  arrays = {'frame_WxF': frame.windows_NxWxF[0], 'mel_hz': features.mel_frequencies(config)}
  for layer, (channel, result) in results.items():
    arrays[f'layer_{layer}_channel'] = np.asarray(channel)
    for name, value in result._asdict().items():
      arrays[f'layer_{layer}_{name}'] = np.asarray(value)
  common.savez(os.path.join(out_dir, f'figure1_{letter}.npz'), **arrays,
               meta=json.dumps({'letter': letter, 'utterance': frame.ids[0],
                                'position': int(frame.positions_N[0]), 'checkpoint_step': step,
                                'am': config.am.to_dict()}))
  figures.figure1(config, results, letter, output_layer,
                  os.path.join(out_dir, f'figure1_{letter}.png'))
  return frame, results
