"""A copy of a corpus whose audio went through Ogg/Opus: what lossy audio does to a result, or a
corpus small enough to carry to a machine that cannot synthesize it.

  python experiments/recode_corpus.py --corpus=data/corpus --out_dir=data/corpus_opus \
      --splits=train,dev --kbps=23.5
  python experiments/recode_corpus.py --corpus=data/corpus --out_dir=data/corpus_ogg \
      --splits=train,dev --kbps=23.5 --keep_ogg   # .ogg files, a sixth of the size
  python experiments/recode_corpus.py --corpus=data/corpus_ogg --out_dir=data/corpus_opus \
      --splits=train,dev                          # back to FLAC, the same samples as the first

The FLAC files of --splits are encoded at --kbps and decoded back to 16-bit FLAC (or kept as
Ogg); everything else, the other splits too, is copied as it is
(`navai_jax.speech.librispeech.recode_corpus`). The same command after an interruption finishes
the copy; OUT_DIR/RECODED.json holds its settings.
"""

import os

from absl import flags

from navai_jax.speech import librispeech
from navai_jax.stages import cli

_CORPUS = flags.DEFINE_string('corpus', None, 'Corpus folder (LibriSpeech layout).',
                              required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'New, empty output folder.', required=True)
_SPLITS = flags.DEFINE_list('splits', ['train', 'dev'], 'Split folders whose audio is recoded.')
_KBPS = flags.DEFINE_float('kbps', 24.0, 'Opus target bitrate, 6 to 256 kbit/s.')
_KEEP_OGG = flags.DEFINE_bool('keep_ogg', False, 'Write the Ogg/Opus files, not FLAC.')
_WORKERS = flags.DEFINE_integer('workers', os.cpu_count(), 'Processes.', lower_bound=1)


def main(argv):
  del argv
  count = librispeech.recode_corpus(_CORPUS.value, _OUT_DIR.value, _SPLITS.value,
                                    kbps=_KBPS.value, keep_ogg=_KEEP_OGG.value,
                                    workers=_WORKERS.value)
  print(f'{count} audio files of {", ".join(_SPLITS.value)} recoded into {_OUT_DIR.value}')


if __name__ == '__main__':
  cli.run(main)
