"""Recorded people in other languages as a split of the corpus folder, to train on beside it.

  python experiments/make_other_languages.py --corpus=data/corpus
  python experiments/ablation.py --corpus=data/corpus --rows=all,all@other

Reads Asterisk's French, Italian and Russian prompts and Fish Fillets NG's Dutch and Czech
dialogue from Debian's packages (`navai_jax.speech.other_languages`; `apt-get install` the
packages it names where one is missing) and writes CORPUS/other_languages/, which
`--config.data.train_split=train+other_languages` adds to the training speech. The human test
voice's own prompts are never among them.
"""

import json

from absl import flags

from navai_jax.speech import other_languages
from navai_jax.stages import cli

_CORPUS = flags.DEFINE_string('corpus', 'data/corpus', 'The corpus folder to write the split '
                              f'{other_languages.SPLIT!r} into.')
_LANGUAGES = flags.DEFINE_list('languages', list(other_languages.LANGUAGES),
                               'Languages among ' + ', '.join(other_languages.LANGUAGES) + '.')


def main(argv):
  del argv
  summary = other_languages.make_split(_CORPUS.value, tuple(_LANGUAGES.value))
  print(json.dumps(summary, indent=1))
  print(f'Split {other_languages.SPLIT!r} in {_CORPUS.value}: '
        f'{sum(s["kept"] for s in summary.values())} lines, '
        f'{sum(s["hours"] for s in summary.values()):.2f} hours')


if __name__ == '__main__':
  cli.run(main)
