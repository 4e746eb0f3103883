"""The human set's prompts said by a corpus's voices: what the words cost, apart from the voice.

  python experiments/speak_human_set.py --source=data/asterisk --corpus=data/corpus \
      --speakers=test,1100 --out_dir=data/asterisk_voices
  python experiments/evaluate.py --workdir=runs/small --split=human \
      --data_source=folder:data/asterisk_voices

Every chosen speaker of CORPUS (its SPEAKERS.txt: split names take that split's speakers, numbers
one speaker each) says every transcript of SOURCE/SPLIT at the middle rate and pitch
(`navai_jax.speech.corpus.speak_split`), written as OUT_DIR/SPLIT in LibriSpeech layout.
Evaluation then reports each voice on the human voice's words (`per_speaker`, and by words per
prompt `per_speaker_length`), beside what the same voices score on the corpus's own test
sentences. Evaluation only, like the human set.
"""

import json

from absl import flags

from navai_jax.speech import corpus
from navai_jax.speech import voices
from navai_jax.stages import cli

_SOURCE = flags.DEFINE_string('source', 'data/asterisk', 'Folder with the split to say.')
_SPLIT = flags.DEFINE_string('split', 'human', 'The split of --source to say.')
_CORPUS = flags.DEFINE_string('corpus', 'data/corpus', 'Corpus whose SPEAKERS.txt names voices.')
_SPEAKERS = flags.DEFINE_list('speakers', ['test'], 'Split names (train, dev, test) or speaker '
                              'ids of --corpus.')
_OUT_DIR = flags.DEFINE_string('out_dir', 'data/asterisk_voices', 'Output folder.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Synthesis processes.')

flags.register_validator('workers', lambda n: n >= 1, '--workers must be >= 1.')


def choose(known: list[voices.Speaker], wanted: list[str], where: str) -> list[voices.Speaker]:
  """The speakers of `known` that `wanted` names (split names or ids), in `known`'s order."""
  if not known:
    raise ValueError(f'{where}: no SPEAKERS.txt with an engine column (a corpus of '
                     'make_corpus.py).')
  ids = {str(s.id) for s in known}
  unknown = [w for w in wanted if w not in voices.SPLITS and w not in ids]
  if unknown:
    raise ValueError(f'--speakers: {", ".join(unknown)} is neither a split nor a speaker of '
                     f'{where} (speakers: {", ".join(sorted(ids))}).')
  return [s for s in known if s.split in wanted or str(s.id) in wanted]


def main(argv):
  del argv
  speakers = choose(voices.read_speakers(_CORPUS.value), _SPEAKERS.value, _CORPUS.value)
  missing = voices.missing_engines(sorted({s.engine for s in speakers}))
  for engine, need in missing.items():
    print(f'Speech engine {engine} is missing (needs {need}): its speakers are left out.')
  speakers = [s for s in speakers if s.engine not in missing]
  summary = corpus.speak_split(_SOURCE.value, _OUT_DIR.value, speakers, _SPLIT.value,
                               num_workers=_WORKERS.value)
  print(json.dumps(summary))
  print(f'Split {_SPLIT.value!r} said by {len(speakers)} voices in {_OUT_DIR.value}')


if __name__ == '__main__':
  cli.run(main)
