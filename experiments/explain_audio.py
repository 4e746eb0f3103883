"""Your own recording: its transcript and the sensitivity and LRP maps of every letter heard.

  python experiments/explain_audio.py --workdir=runs/small --audio=me.wav
  python experiments/explain_audio.py --workdir=runs/small --audio=recordings/ --letters=a,t

Reads WAV, FLAC or OGG at any sample rate and channel count (mixed to mono and resampled to
16 kHz with scipy's polyphase filter; the script says when it does), transcribes it with the
trained run's latest checkpoint (or --step), and for every frame predicted as a letter (or
only --letters) makes its sensitivity (paper eq. 1) and LRP (eqs. 3-4, --lrp_rule) maps.
A directory is processed file by file; a file that cannot be used (unreadable, silent, shorter
than one receptive window of 1.67 s) is named with the reason and skipped. Written into
--out_dir (default WORKDIR/explain)/NAME/: transcript.txt, frames.json (per frame: letter,
time, probability, where each map peaks), maps.npz, maps_X.png per letter (Figure 2's style).
"""

import os

from absl import flags

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.introspection import lrp
from navai_jax.stages import explain_audio

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_AUDIO = flags.DEFINE_string('audio', None, 'An audio file (WAV, FLAC, OGG) or a directory '
                             'of them.', required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/explain.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_LETTERS = flags.DEFINE_list('letters', None, 'Explain only these letters (default: all).')
_FRAMES_PER_LETTER = flags.DEFINE_integer('frames_per_letter', 4, 'Frames drawn per letter.',
                                          lower_bound=1)
_LRP_RULE = flags.DEFINE_enum('lrp_rule', 'paper', list(lrp.RULES), 'LRP rule.')


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'explain')
  done = explain_audio.run(config, variables, step, _AUDIO.value, out_dir,
                           letters=_LETTERS.value, frames_per_letter=_FRAMES_PER_LETTER.value,
                           lrp_rule=_LRP_RULE.value)
  for item in done:
    if 'error' in item:
      continue
    notes = f' ({"; ".join(item["notes"])})' if item['notes'] else ''
    print(f'{item["path"]}{notes}:\n  "{item["transcript"]}"\n  {item["frames"]} letter frames '
          f'explained; written to {item["out_dir"]}')
  failed = [item for item in done if 'error' in item]
  if failed:
    raise SystemExit(f'{len(failed)} of {len(done)} recordings could not be used (named above).')


if __name__ == '__main__':
  cli.run(main)
