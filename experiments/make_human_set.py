"""A human voice for evaluation only: Asterisk's English prompts as a LibriSpeech-layout split.

  python experiments/make_human_set.py --out_dir=data/asterisk
  python experiments/evaluate.py --workdir=runs/small --split=human \
      --data_source=folder:data/asterisk

Reads Debian's `asterisk-core-sounds-en-g722` (the G.722 prompts of one professional US-English
speaker) and `asterisk-core-sounds-en` (their transcripts), both installed by
`apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en` (./run.sh does it where
it runs as root), and writes OUT_DIR/human/ (`navai_jax.speech.asterisk.make_split`). Never
trained on.
"""

import json

from absl import flags

from navai_jax.speech import asterisk
from navai_jax.stages import cli

_OUT_DIR = flags.DEFINE_string('out_dir', 'data/asterisk', 'Output folder.')
_SOUNDS_DIR = flags.DEFINE_string('sounds_dir', asterisk.SOUNDS_DIR, 'The G.722 prompts.')
_TRANSCRIPTS = flags.DEFINE_string('transcripts', asterisk.TRANSCRIPTS,
                                   'core-sounds-en.txt.gz of asterisk-core-sounds-en.')


def main(argv):
  del argv
  summary = asterisk.make_split(_OUT_DIR.value, _SOUNDS_DIR.value, _TRANSCRIPTS.value)
  if summary['without_transcript']:
    print(f'{len(summary["without_transcript"])} prompt(s) without a transcript line, not used: '
          f'{", ".join(summary["without_transcript"])}')
  print(json.dumps({k: v for k, v in summary.items() if k != 'without_transcript'}))
  print(f'Split {asterisk.SPLIT!r} in {_OUT_DIR.value}')


if __name__ == '__main__':
  cli.run(main)
