"""Figure 2 of the paper: sensitivity and LRP of frames predicted as a letter.

  python experiments/introspect.py --workdir=runs/small --letter=a --split=dev

Takes `--num_frames` frames of the split predicted as `--letter` (the first such frame of each
utterance in data order, or frames of `--utterance` only), computes the sensitivity (paper eq.
1, softmax output) and LRP (paper eqs. 3-4) of each, and writes `figure2_LETTER.png` (rows:
spectrogram, sensitivity overlay, LRP overlay; red positive, blue negative) and
`figure2_LETTER.npz` (windows, maps, utterance ids, positions, probabilities) into `--out_dir`
(default WORKDIR/introspect). A few seconds for the `small` config on two CPU cores.
"""

import json
from pathlib import Path

from absl import flags
import numpy as np

from navai_jax import attribution
from navai_jax import checkpoints
from navai_jax import cli
from navai_jax import data
from navai_jax import features
from navai_jax import lrp
from navai_jax import plotting

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

flags.register_validator('letter', lambda l: len(l) == 1 and 'a' <= l <= 'z',
                         '--letter must be one letter a-z.')
flags.register_validator('num_frames', lambda n: n >= 1, '--num_frames must be >= 1.')


def feature_batches(config, split: str, max_utterances: int):
  """`(x_BxTxF, frames_B, ids)` of the split's real utterances, batch by batch."""
  for batch in data.batches(config, split, train=False, max_utterances=max_utterances):
    yield features.of_batch(batch, config)


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value)
  letter = _LETTER.value
  result = attribution.introspect_letter(
      config, variables, feature_batches(config, _SPLIT.value, _MAX_UTTERANCES.value),
      letter=letter, num_frames=_NUM_FRAMES.value, utterance=_UTTERANCE.value,
      lrp_rule=_LRP_RULE.value, output=_OUTPUT.value)
  out_dir = Path(_OUT_DIR.value or Path(_WORKDIR.value) / 'introspect')
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = [f"'{letter}' p={p:.3f}, {u} @ {n}"
          for u, n, p in zip(result['ids'], result['positions'], result['probability'])]
  plotting.overlay_grid(config, result['windows'],
                        {'sensitivity': result['sensitivity'], f'LRP ({_LRP_RULE.value})':
                         result['lrp']}, rows, path=out_dir / f'figure2_{letter}.png')
  np.savez(out_dir / f'figure2_{letter}.npz', **result, mel_hz=features.mel_frequencies(config),
           meta=json.dumps({'letter': letter, 'split': _SPLIT.value, 'checkpoint_step': step,
                            'lrp_rule': _LRP_RULE.value, 'output': _OUTPUT.value}))
  if len(result['windows']) < _NUM_FRAMES.value:
    print(f'Only {len(result["windows"])} frames of {letter!r} found.')
  for row, s, r in zip(rows, result['sensitivity'], result['lrp']):
    print(f'{row}: sensitivity in [{s.min():+.2e}, {s.max():+.2e}], '
          f'LRP positive share {np.mean(r > 0):.2f}')
  print(f'Written to {out_dir}/figure2_{letter}.{{png,npz}}')


if __name__ == '__main__':
  cli.run(main)
