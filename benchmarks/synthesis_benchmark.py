"""Speech synthesis speed per engine: audio seconds made per second, in one worker process.

  python benchmarks/synthesis_benchmark.py --sentences=40 --rounds=2

Speaks the same training sentences (the corpus's first ones for seed 0) with one voice of every
engine that runs here, as `corpus.make_corpus` does (the engine's own call with the corpus's
rate and pitch, times included), in this one process; the corpus runs one such process per
worker. Engines are interleaved round by round and the best round is kept, its spread printed.
Piper's, Kokoro's and Silero's models are loaded before the first round (once per worker in
the corpus).
Kokoro is measured twice: a voice of Kokoro-82M itself, and `heart`, hibari's distilled model.
"""

import time

from absl import app
from absl import flags

from navai_jax.speech import corpus
from navai_jax.speech import sentences
from navai_jax.speech import voices

_SENTENCES = flags.DEFINE_integer('sentences', 40, 'Sentences per engine and round.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Rounds (engines interleaved).')

SPEAKERS = {'espeak': voices.Speaker(100, 'train', 'en-us', 'm1'),
            'flite': voices.Speaker(1004, 'train', 'slt', '', 'flite'),
            'piper': voices.Speaker(1100, 'train', 'joe', '', 'piper'),
            'pico': voices.Speaker(1200, 'test', 'en-US', '', 'pico'),
            'festival': voices.Speaker(1300, 'train', 'ked', '', 'festival'),
            'mbrola': voices.Speaker(1500, 'train', 'us1', '', 'mbrola'),
            'mbrola_accented': voices.Speaker(1702, 'train', 'de5-en', '', 'mbrola_accented'),
            'rhvoice': voices.Speaker(1600, 'train', 'bdl', '', 'rhvoice'),
            'kokoro': voices.Speaker(1400, 'train', 'jf_alpha', '', 'kokoro'),
            'kokoro/heart': voices.Speaker(1409, 'train', 'heart', '', 'kokoro'),
            'silero': voices.Speaker(1807, 'train', 'en_7', '', 'silero')}


def main(argv):
  del argv
  pool = corpus.split_sentences(sentences.load_sentences(), 0)['train']
  texts = pool[:_SENTENCES.value]
  missing = voices.missing_engines(sorted({s.engine for s in SPEAKERS.values()}))
  engines = [e for e, s in SPEAKERS.items() if s.engine not in missing]
  for engine, need in missing.items():
    print(f'{engine}: not measured, needs {need}')
  for engine in engines:  # models loaded before timing
    if SPEAKERS[engine].engine in ('piper', 'kokoro', 'silero'):
      voices.speak(SPEAKERS[engine], 'warm up', 175, 50, 0)
  speeds = {e: [] for e in engines}
  for _ in range(_ROUNDS.value):
    for engine in engines:
      start, audio_seconds = time.perf_counter(), 0.0
      for i, text in enumerate(texts):
        audio_A, _, _ = voices.speak(SPEAKERS[engine], text, 175, 50, i)
        audio_seconds += len(audio_A) / 16000
      speeds[engine].append(audio_seconds / (time.perf_counter() - start))
  print(f'Audio seconds per second, one worker, {len(texts)} sentences, best of '
        f'{_ROUNDS.value} rounds (all rounds):')
  for engine, s in speeds.items():
    print(f'  {engine:16s} {max(s):7.1f}  ({", ".join(f"{v:.1f}" for v in s)}; '
          f'{voices.LICENCES[SPEAKERS[engine].engine]})')
  print(f'Command: python benchmarks/synthesis_benchmark.py --sentences={_SENTENCES.value} '
        f'--rounds={_ROUNDS.value}')


if __name__ == '__main__':
  app.run(main)
