"""Synthesizes the offline English speech corpus from several engines, in LibriSpeech's layout.

  python experiments/make_corpus.py --out_dir=data/corpus --hours=3 \
      --engines=espeak,flite,piper,pico,mbrola,rhvoice --held_out_engines=pico

Engines and voices: navai_jax/speech/voices.py. An engine that cannot run here (flite needs
Debian's `flite`, MBROLA and RHVoice Debian's contrib and non-free packages) is named in one
line, with its voices, and left out.

It prints how many audio-seconds it synthesized per second. Interrupt it at any time: run it
again with the same flags and it finishes the same corpus, identical to an uninterrupted run.
"""

from absl import flags

from navai_jax.stages import cli
from navai_jax.speech import corpus, sentences

_OUT_DIR = flags.DEFINE_string('out_dir', 'data/corpus', 'Output folder.')
_HOURS = flags.DEFINE_float('hours', 3.0, 'Training audio, in hours.')
_DEV_HOURS = flags.DEFINE_float('dev_hours', 0.1, 'Dev audio, in hours.')
_TEST_HOURS = flags.DEFINE_float('test_hours', 0.1, 'Test audio, in hours.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of sentence split, speakers, rate and pitch.')
_TRAIN_SPEAKERS = flags.DEFINE_integer('train_speakers', 32, 'Training (voice, variant) pairs.')
_DEV_SPEAKERS = flags.DEFINE_integer('dev_speakers', 4, 'Held-out dev speakers.')
_TEST_SPEAKERS = flags.DEFINE_integer('test_speakers', 4, 'Held-out test speakers.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Synthesis processes.')
_ENGINES = flags.DEFINE_list('engines', list(corpus.DEFAULT_ENGINES),
                             f'Speech engines, of {", ".join(corpus.ENGINES)}.')
_HELD_OUT = flags.DEFINE_list('held_out_engines', ['pico'], 'Engines heard only in dev and test.')
_SHORT = flags.DEFINE_float('short_fraction', 0.0, 'Share of utterances that say only 1-3 words '
                            'of their sentence; > 0 also pads utterances shorter than one '
                            'receptive field with silence instead of dropping them.')
_TEXT = flags.DEFINE_list('text_sources', list(sentences.DEFAULT_TEXT_SOURCES),
                          f'Where sentences come from, of {", ".join(sentences.TEXT_SOURCES)} '
                          '(wordnet_examples needs Debian\'s wordnet-base).')

flags.register_validator('hours', lambda h: h > 0, '--hours must be > 0.')
flags.register_validator('seed', lambda s: s >= 0, '--seed must be >= 0.')
flags.register_validator('dev_hours', lambda h: h >= 0, '--dev_hours must be >= 0.')
flags.register_validator('test_hours', lambda h: h >= 0, '--test_hours must be >= 0.')
flags.register_validator('short_fraction', lambda f: 0 <= f <= 1,
                         '--short_fraction must be in [0, 1].')
for _name in ('train_speakers', 'dev_speakers', 'test_speakers', 'workers'):
  flags.register_validator(_name, lambda n: n >= 1, f'--{_name} must be >= 1.')


def main(argv):
  del argv
  stats = corpus.make_corpus(
      _OUT_DIR.value, hours=_HOURS.value, seed=_SEED.value, dev_hours=_DEV_HOURS.value,
      test_hours=_TEST_HOURS.value, num_train_speakers=_TRAIN_SPEAKERS.value,
      num_dev_speakers=_DEV_SPEAKERS.value, num_test_speakers=_TEST_SPEAKERS.value,
      num_workers=_WORKERS.value, engines=_ENGINES.value,
      held_out_engines=_HELD_OUT.value, text_sources=_TEXT.value,
      short_fraction=_SHORT.value, progress=True)
  for split, summary in stats['splits'].items():
    print(f"{split}: {summary['utterances']} utterances, {summary['hours']:.3f} h, "
          f"{len(summary['speakers'])} speakers, {summary['sentences_available']} sentences")
  speed = stats['synthesized_seconds'] / stats['synthesis_wall_seconds']
  print(f"Synthesized {stats['synthesized_seconds']:.0f} s of audio in "
        f"{stats['synthesis_wall_seconds']:.1f} s: {speed:.0f} audio-seconds per second "
        f"({stats['new_utterances']} new utterances, {stats['dropped']} dropped "
        f"{stats['dropped_by_engine']}; "
        f"{stats['wall_seconds']:.0f} s in all, with loading the text).")
  print(f'Corpus in {_OUT_DIR.value}')


if __name__ == '__main__':
  cli.run(main)
