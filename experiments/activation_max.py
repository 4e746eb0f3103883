"""Figure 1 of the paper: optimal inputs (activation maximization) for the neurons of a letter.

  python experiments/activation_max.py --workdir=runs/small --letter=a --split=dev

Finds a frame of the split predicted as `--letter` (the `--frame_index`-th in data order), picks
per layer the neuron most active on it (paper §4.1), optimizes the input of the neurons of
layer 1, layer 2, `--high_layer` and the letter's output neuron, and writes
`figure1_LETTER.png` and `figure1_LETTER.npz` into `--out_dir` (default WORKDIR/activation_max).
AM settings are `--am.FIELD=VALUE` overrides of `activation_max.am_config()` (the paper's:
`--am.steps=250 --am.learning_rate=0.05 --am.l1=0.001 --am.l2=0.001`); the Lucid regularizers
are `--am.tv_time`, `--am.tv_freq` and `--am.jitter`. A `tiny` model took 30 s end to end on
two CPU cores (most of it start-up and data); the output-neuron panel, which runs all twelve
layers every step, grows with the model.
"""

import json
from pathlib import Path

from absl import flags
from ml_collections import config_flags
import matplotlib.figure
import numpy as np

from navai_jax import activation_max
from navai_jax import checkpoints
from navai_jax import cli
from navai_jax import data
from navai_jax import features
from navai_jax import frames
from navai_jax import model
from navai_jax import plotting

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_LETTER = flags.DEFINE_string('letter', 'a', 'Letter a-z whose neurons are optimized.')
_SPLIT = flags.DEFINE_string('split', 'dev', 'Split in which to look for a frame of the letter.')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/activation_max.')
_HIGH_LAYER = flags.DEFINE_integer('high_layer', 11,
                                   'The high layer of the bottom-left panel (10 or 11 in the '
                                   'paper\'s network; layer 10 is the wide 32-frame one).')
_FRAME_INDEX = flags.DEFINE_integer('frame_index', 0,
                                    'Which frame of the letter, in data order, chooses neurons.')
_MAX_UTTERANCES = flags.DEFINE_integer('max_utterances', 0,
                                       'Search only this many utterances (0 = the whole split).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_AM = config_flags.DEFINE_config_dict('am', activation_max.am_config(),
                                      'Activation maximization settings.')

flags.register_validator('letter', lambda l: len(l) == 1 and 'a' <= l <= 'z',
                         '--letter must be one letter a-z.')
flags.register_validator('frame_index', lambda i: i >= 0, '--frame_index must be >= 0.')
flags.register_validator('max_utterances', lambda n: n >= 0, '--max_utterances must be >= 0.')


def find_frame(config, variables, split: str, letter: str, index: int,
               max_utterances: int) -> frames.Frames:
  """The `index`-th frame predicted as `letter` in the split (one-frame `Frames`)."""
  activation_max.letter_id(letter)
  seen, letters = 0, set()
  for batch in data.batches(config, split, train=False, max_utterances=max_utterances):
    found = frames.collect(config, variables, *features.of_batch(batch, config))
    letters |= set(found.letters)
    index_in_batch = [i for i, l in enumerate(found.letters) if l == letter]
    if seen + len(index_in_batch) > index:
      return found.take([index_in_batch[index - seen]])
    seen += len(index_in_batch)
  raise ValueError(f'Split {split!r} has {seen} frames predicted as {letter!r}, so no frame '
                   f'number {index}; letters predicted: {", ".join(sorted(letters)) or "none"}.')


def plot_figure1(config, results, letter: str, output_layer: int, path: Path) -> None:
  """2x2 optimal inputs, each scaled to absolute maximum 1, on the axes of the other figures."""
  fig = matplotlib.figure.Figure(figsize=(8, 6.4), layout='constrained')
  for ax, (layer, (channel, result)) in zip(fig.subplots(2, 2).flat, results.items()):
    what = f"output neuron '{letter}'" if layer == output_layer else f'channel {channel}'
    image = plotting.show_map(ax, np.asarray(result.input_TxF), config, f'layer {layer}, {what}')
  fig.colorbar(image, ax=fig.axes, shrink=0.6, label='scaled value')
  fig.suptitle(f"Optimal inputs of the neurons most active on a frame predicted as '{letter}'")
  fig.savefig(path, dpi=120)


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value)
  letter = _LETTER.value
  output_layer = len(model.layer_specs(config.model))
  if not 2 < _HIGH_LAYER.value < output_layer:
    raise ValueError(f'--high_layer must be between 3 and {output_layer - 1}, '
                     f'got {_HIGH_LAYER.value}.')
  layers = (1, 2, _HIGH_LAYER.value, output_layer)
  frame = find_frame(config, variables, _SPLIT.value, letter, _FRAME_INDEX.value,
                     _MAX_UTTERANCES.value)
  results = activation_max.optimal_inputs_for_letter(config, variables, frame.windows_NxWxF[0],
                                                     letter, layers, _AM.value)
  out_dir = Path(_OUT_DIR.value or Path(_WORKDIR.value) / 'activation_max')
  out_dir.mkdir(parents=True, exist_ok=True)
  arrays = {'frame_WxF': frame.windows_NxWxF[0], 'mel_hz': features.mel_frequencies(config)}
  for layer, (channel, result) in results.items():
    arrays[f'layer_{layer}_channel'] = np.asarray(channel)
    for name, value in result._asdict().items():
      arrays[f'layer_{layer}_{name}'] = np.asarray(value)
  np.savez(out_dir / f'figure1_{letter}.npz', **arrays,
           meta=json.dumps({'letter': letter, 'utterance': frame.ids[0],
                            'position': int(frame.positions_N[0]), 'checkpoint_step': step,
                            'am': _AM.value.to_dict()}))
  plot_figure1(config, results, letter, output_layer, out_dir / f'figure1_{letter}.png')
  for layer, (channel, result) in results.items():
    print(f'layer {layer:2d} channel {channel:4d}: activation {float(result.activation_S[0]):+.3f}'
          f' -> {float(result.activation_S[-1]):+.3f} over {len(result.activation_S)} steps')
  print(f"Frame: utterance {frame.ids[0]}, output position {int(frame.positions_N[0])}, "
        f"checkpoint step {step}. Written to {out_dir}/figure1_{letter}.{{png,npz}}")


if __name__ == '__main__':
  cli.run(main)
