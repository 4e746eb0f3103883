"""Figure 1 of the paper: optimal inputs (activation maximization) for the neurons of a letter.

  python experiments/activation_max.py --workdir=runs/small --letter=a --split=dev

Finds a frame of the split predicted as `--letter` (the `--frame_index`-th in data order), picks
per layer the neuron most active on it (paper §4.1), optimizes the input of the neurons of
layer 1, layer 2, `--high_layer` and the letter's output neuron, and writes
`figure1_LETTER.png` and `figure1_LETTER.npz` into `--out_dir` (default WORKDIR/activation_max).
AM settings are the run's `am` config section, overridden as `--config.am.FIELD=VALUE` (the
paper's: `--config.am.steps=250 --config.am.learning_rate=0.05 --config.am.l1=0.001
--config.am.l2=0.001`); the Lucid regularizers are `--config.am.tv_time`, `--config.am.tv_freq`
and `--config.am.jitter`.
"""

from pathlib import Path

from absl import flags

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.recognizer import vocab
from navai_jax.stages import figure1

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
_CONFIG = cli.define_sections('am')
_DATA_SOURCE = cli.define_data_source()

flags.register_validator('letter', vocab.is_letter_name, '--letter must be one letter a-z.')
flags.register_validator('frame_index', lambda i: i >= 0, '--frame_index must be >= 0.')
flags.register_validator('max_utterances', lambda n: n >= 0, '--max_utterances must be >= 0.')


def main(argv):
  del argv
  overrides = {**cli.overrides(_CONFIG), **_DATA_SOURCE()}
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                             overrides)
  out_dir = Path(_OUT_DIR.value or Path(_WORKDIR.value) / 'activation_max')
  letter = _LETTER.value
  frame, results = figure1.run(config, variables, step, str(out_dir), split=_SPLIT.value,
                               letter=letter, high_layer=_HIGH_LAYER.value,
                               frame_index=_FRAME_INDEX.value,
                               max_utterances=_MAX_UTTERANCES.value)
  for layer, (channel, result) in results.items():
    print(f'layer {layer:2d} channel {channel:4d}: activation {float(result.activation_I[0]):+.3f}'
          f' -> {float(result.activation_I[-1]):+.3f} over {len(result.activation_I)} steps')
  print(f"Frame: utterance {frame.ids[0]}, output position {int(frame.positions_N[0])}, "
        f"checkpoint step {step}. Written to {out_dir}/figure1_{letter}.{{png,npz}}")


if __name__ == '__main__':
  cli.run(main)
