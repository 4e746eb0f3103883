"""A copy of a corpus whose audio went through a codec: what lossy audio (Ogg/Opus) or the
human voice's telephone codec (G.722) does to a result, or a corpus small enough to carry to a
machine that cannot synthesize it.

  python experiments/recode_corpus.py --corpus=data/corpus --out_dir=data/corpus_opus \
      --splits=train,dev --kbps=23.5
  python experiments/recode_corpus.py --corpus=data/corpus --out_dir=data/corpus_ogg \
      --splits=train,dev --kbps=23.5 --keep_ogg   # .ogg files, a sixth of the size
  python experiments/recode_corpus.py --corpus=data/corpus_ogg --out_dir=data/corpus_opus \
      --splits=train,dev                          # back to FLAC, the same samples as the first
  python experiments/recode_corpus.py --corpus=data/corpus --out_dir=data/corpus_g722 \
      --splits=test --codec=g722                  # the test voices as Asterisk's prompts come

The FLAC files of --splits are encoded at --kbps and decoded back to 16-bit FLAC (or kept as
Ogg; G.722's delay of 22 samples taken off, so the timing files still hold); everything else,
the other splits too, is copied as it is (`navai_jax.speech.librispeech.recode_corpus`). The
same command after an interruption finishes the copy; OUT_DIR/RECODED.json holds its settings.
"""

import os

from absl import flags

from navai_jax.speech import librispeech
from navai_jax.stages import cli

_CORPUS = flags.DEFINE_string('corpus', None, 'Corpus folder (LibriSpeech layout).',
                              required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'New, empty output folder.', required=True)
_SPLITS = flags.DEFINE_list('splits', ['train', 'dev'], 'Split folders whose audio is recoded.')
_CODEC = flags.DEFINE_enum('codec', 'opus', list(librispeech.CODECS), 'Codec of the round trip.')
_KBPS = flags.DEFINE_float('kbps', None, 'Bitrate in kbit/s: Opus 6 to 256 (default 24), '
                           'G.722 48, 56 or 64 (default 64, as Asterisk\'s prompts).')
_KEEP_OGG = flags.DEFINE_bool('keep_ogg', False, 'Write the Ogg/Opus files, not FLAC.')
_WORKERS = flags.DEFINE_integer('workers', os.cpu_count(), 'Processes.', lower_bound=1)


def main(argv):
  del argv
  count = librispeech.recode_corpus(_CORPUS.value, _OUT_DIR.value, _SPLITS.value,
                                    kbps=_KBPS.value, keep_ogg=_KEEP_OGG.value,
                                    workers=_WORKERS.value, codec=_CODEC.value)
  print(f'{count} audio files of {", ".join(_SPLITS.value)} recoded ({_CODEC.value}) into '
        f'{_OUT_DIR.value}')


if __name__ == '__main__':
  cli.run(main)
