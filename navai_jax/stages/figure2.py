"""Figure 2: sensitivity and LRP of frames predicted as a letter (paper §4.2), and where the
channels that carry each frame's LRP evidence look (CRP's conditional maps)."""

import functools
import json
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.introspection import attribution
from navai_jax.introspection import concepts
from navai_jax.introspection import frames
from navai_jax.outputs import figures
from navai_jax.recognizer import features
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.stages import common

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        split: str, letter: str, num_frames: int = 2, utterance: Optional[str] = None,
        lrp_rule: str = 'paper', output: str = 'softmax',
        max_utterances: int = 0, concept_layer: int = 8, concept_channels: int = 3
        ) -> dict[str, np.ndarray]:
  """Figure 2: sensitivity (paper eq. 1) and LRP (eqs. 3-4) of frames predicted as `letter`.

  Takes the first frame of the letter in each utterance in data order (all frames of
  `utterance` when it is given) until `num_frames` are found, and writes
  `figure2_LETTER.png` (rows: spectrogram, sensitivity overlay, LRP overlay) and
  `figure2_LETTER.npz` (windows, maps, utterance ids, positions, probabilities) into `out_dir`.
  With `concept_channels` > 0 also `figure2_LETTER_channels.{png,npz}`: per frame, the
  `concept_channels` channels of layer `concept_layer` that carry the most of its LRP relevance
  and each one's conditional map (`concepts.conditional_maps`, the same rule).
  """
  common.start(config, out_dir)
  layers = network.layers_from_variables(config, variables)
  if concept_channels:
    concepts.check_condition(layers, concept_layer)
    if concept_channels > layers[concept_layer - 1].kernel_KxCxD.shape[-1]:
      raise ValueError(f'layer {concept_layer} has '
                       f'{layers[concept_layer - 1].kernel_KxCxD.shape[-1]} channels; '
                       f'got concept_channels={concept_channels}')
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
  if concept_channels:
    _channels(config, layers, result, targets_N, letter, out_dir, concept_layer,
              concept_channels, lrp_rule)
  return result


def _channels(config: ml_collections.ConfigDict, layers: network.Layers,
              result: dict[str, np.ndarray], targets_N: np.ndarray, letter: str, out_dir: str,
              layer: int, count: int, rule: str) -> None:
  """The conditional maps of each frame's `count` most relevant channels of `layer`."""
  width = layers[layer - 1].kernel_KxCxD.shape[-1]
  maps = jax.jit(functools.partial(concepts.conditional_maps, rule=rule),
                 static_argnums=3)
  maps_NxDxWxF, _, relevance_NxD = maps(layers, jnp.asarray(result['windows']),
                                        jnp.asarray(targets_N), layer,
                                        concepts.channel_masks(jnp.arange(width), width))
  relevance_NxD = np.asarray(relevance_NxD)
  channels_NxC = np.argsort(-relevance_NxD, axis=1, kind='stable')[:, :count]
  chosen = np.take_along_axis(np.asarray(maps_NxDxWxF), channels_NxC[:, :, None, None], axis=1)
  share_NxD = np.asarray(concepts.channel_shares(jnp.asarray(relevance_NxD)))
  rows = [f"'{letter}', {u} @ {n}\nchannels " + ', '.join(
              f'{c} ({share_NxD[i, c]:.0%})' for c in channels_NxC[i])
          for i, (u, n) in enumerate(zip(result['ids'], result['positions']))]
  figures.overlay_grid(config, result['windows'],
                       {f'layer {layer}, channel #{k + 1}': chosen[:, k] for k in range(count)},
                       rows, path=os.path.join(out_dir, f'figure2_{letter}_channels.png'))
  common.savez(os.path.join(out_dir, f'figure2_{letter}_channels.npz'), maps=chosen,
               channels=channels_NxC, channel_relevance=relevance_NxD,
               meta=json.dumps({'layer': layer, 'lrp_rule': rule}))
