"""eSpeak NG through ctypes: word and phoneme times, determinism, unknown variants."""

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
