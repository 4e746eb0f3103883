"""Figure 2 of the paper: sensitivity and LRP of frames predicted as a letter.

  python experiments/introspect.py --workdir=runs/small --letter=a --split=dev

Takes `--num_frames` frames of the split predicted as `--letter` (the first such frame of each
utterance in data order, or frames of `--utterance` only), computes the sensitivity (paper eq.
1, softmax output) and LRP (paper eqs. 3-4) of each, and writes `figure2_LETTER.png` (rows:
spectrogram, sensitivity overlay, LRP overlay; red positive, blue negative) and
`figure2_LETTER.npz` (windows, maps, utterance ids, positions, probabilities) into `--out_dir`
(default WORKDIR/introspect); and `figure2_LETTER_channels.{png,npz}`: per frame the
`--concept_channels` channels of layer `--concept_layer` that carry the most of its LRP
relevance, each with its conditional map (where that channel's evidence lies in the input).
"""

from pathlib import Path

from absl import flags
import numpy as np

from navai_jax.introspection import attribution
from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.introspection import lrp
from navai_jax.recognizer import vocab
from navai_jax.stages import figure2

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_SPLIT = flags.DEFINE_string('split', 'dev', 'Split in which to look for frames.')
_LETTER = flags.DEFINE_string('letter', 'a', 'Letter a-z whose frames are explained.')
_UTTERANCE = flags.DEFINE_string('utterance', None, 'Only frames of this utterance id.')
_NUM_FRAMES = flags.DEFINE_integer('num_frames', 2, 'Frames (figure rows).')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/introspect.')
_LRP_RULE = flags.DEFINE_enum('lrp_rule', 'paper', lrp.RULES, 'LRP rule.')
_OUTPUT = flags.DEFINE_enum('output', 'softmax', attribution.OUTPUTS,
                            'Scores whose gradient the sensitivity is.')
_MAX_UTTERANCES = flags.DEFINE_integer('max_utterances', 0,
                                       'Search only this many utterances (0 = the whole split).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_CONCEPT_LAYER = flags.DEFINE_integer('concept_layer', 8, 'Layer whose channels are shown.')
_CONCEPT_CHANNELS = flags.DEFINE_integer('concept_channels', 3, 'Channels per frame (0: none).',
                                         lower_bound=0)
_DATA_SOURCE = cli.define_data_source()

flags.register_validator('letter', vocab.is_letter_name, '--letter must be one letter a-z.')
flags.register_validator('num_frames', lambda n: n >= 1, '--num_frames must be >= 1.')


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                           _DATA_SOURCE())
  out_dir = Path(_OUT_DIR.value or Path(_WORKDIR.value) / 'introspect')
  letter = _LETTER.value
  result = figure2.run(config, variables, step, str(out_dir), split=_SPLIT.value,
                       letter=letter, num_frames=_NUM_FRAMES.value,
                       utterance=_UTTERANCE.value, lrp_rule=_LRP_RULE.value,
                       output=_OUTPUT.value, max_utterances=_MAX_UTTERANCES.value,
                       concept_layer=_CONCEPT_LAYER.value,
                       concept_channels=_CONCEPT_CHANNELS.value)
  if len(result['windows']) < _NUM_FRAMES.value:
    print(f'Only {len(result["windows"])} frames of {letter!r} found.')
  for u, n, p, s, r in zip(result['ids'], result['positions'], result['probability'],
                           result['sensitivity'], result['lrp']):
    print(f"'{letter}' p={p:.3f}, {u} @ {n}: sensitivity in [{s.min():+.2e}, {s.max():+.2e}], "
          f'LRP positive share {np.mean(r > 0):.2f}')
  print(f'Written to {out_dir}/figure2_{letter}.{{png,npz}}' + (
      f' and figure2_{letter}_channels.{{png,npz}}' if _CONCEPT_CHANNELS.value else ''))


if __name__ == '__main__':
  cli.run(main)
