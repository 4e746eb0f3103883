"""eSpeak NG through ctypes: word and phoneme times, determinism, unknown variants, and a
machine without the wheel."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from navai_jax.speech import espeak
from navai_jax.speech import librispeech


def test_synthesize_times_words_and_phonemes():
  # "of the" and "do not" are single word events in plain eSpeak; here every word gets its own.
  text = 'do not change the value of the other items, said the old man'
  audio_A, words, phonemes = espeak.synthesize(text, 'en-gb-x-rp', 'f3', rate=175, pitch=50)
  duration = len(audio_A) / librispeech.SAMPLE_RATE
  assert audio_A.dtype == np.int16 and 3 < duration < 7  # about 175 words per minute
  assert [w['word'] for w in words] == text.replace(',', '').split()
  # Every word has a length (none was cut off by the end of the audio); the final pause is no word.
  assert all(w['end'] > w['start'] for w in words)
  assert words[-1]['end'] == phonemes[-1]['end'] < duration
  starts = [w['start'] for w in words]
  assert starts == sorted(starts)
  for unit in words + phonemes:
    assert 0 <= unit['start'] <= unit['end'] <= duration
  assert len(phonemes) > 2 * len(words)
  assert not any(p['phoneme'].startswith('_') for p in phonemes)
  # Phonemes tile each word: every phoneme lies inside one word.
  for p in phonemes:
    assert any(w['start'] <= p['start'] and p['end'] <= w['end'] for w in words)


def test_synthesize_is_deterministic_whatever_came_before():
  args = ('the quick brown fox jumps over the lazy dog', 'en-us', 'm2', 160, 40)
  first = espeak.synthesize(*args)
  espeak.synthesize('something else entirely, with a pause', 'en-029', 'klatt4', 200, 65)
  second = espeak.synthesize(*args)
  np.testing.assert_array_equal(first[0], second[0])
  assert first[1:] == second[1:]


def test_synthesize_rejects_unknown_variant():
  with pytest.raises(ValueError, match='variant'):
    espeak.synthesize('hello there world', 'en-us', 'nosuchvariant', 170, 50)


def test_training_needs_no_espeak_wheel():
  """Without espeakng-loader (a GPU image, say) training and evaluation still import, the
  engine reports itself missing, and speaking names the wheel it needs."""
  script = textwrap.dedent('''
      import sys
      class NoEspeak:
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] == 'espeakng_loader':
            raise ImportError(name)
      sys.meta_path.insert(0, NoEspeak())
      from navai_jax.training import evaluate, train
      from navai_jax.speech import espeak, voices
      assert not espeak.available()
      assert voices.missing_engines(['espeak', 'flite']).get('espeak') == 'PyPI espeakng-loader'
      try:
        espeak.synthesize('hello there', 'en-us', '', 170, 50)
      except RuntimeError as error:
        print(error)
      ''')
  done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                        cwd=pathlib.Path(__file__).parents[1], check=False)
  assert done.returncode == 0, done.stderr
  assert 'espeakng-loader' in done.stdout and 'not installed' in done.stdout
  assert espeak.available()
