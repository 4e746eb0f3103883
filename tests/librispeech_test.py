"""A folder in LibriSpeech layout, read directly: examples in order, strict checks naming the
file, and a fingerprint that follows the audio and transcripts only."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from navai_jax.speech import librispeech


def test_folder_examples_read_every_utterance_in_transcript_order(tmp_path, write_split):
  ids = write_split(tmp_path, 'dev', ['cat', 'a dog'], speaker=7, chapter=9)
  write_split(tmp_path, 'dev', ['bee'], speaker=3, chapter=4)
  examples = list(librispeech.folder_examples(tmp_path / 'dev'))
  assert [e['id'] for e in examples] == ['3-4-0000'] + ids
  assert [e['text'] for e in examples] == ['BEE', 'CAT', 'A DOG']
  assert examples[1]['speaker_id'] == 7 and examples[1]['chapter_id'] == 9
  written, _ = sf.read(tmp_path / 'dev' / '7' / '9' / f'{ids[0]}.flac', dtype='int16')
  np.testing.assert_array_equal(examples[1]['speech'], written)
  assert examples[1]['speech'].dtype == np.int16 and len(written) >= librispeech.MIN_SAMPLES
  assert [d.name for d in librispeech.split_folders(tmp_path)] == ['dev']
  assert librispeech.tfds_split_name('dev-clean') == 'dev_clean'


def test_each_defect_names_its_file(tmp_path, write_split):
  write_split(tmp_path, 'dev', ['cat', 'dog'])
  chapter = tmp_path / 'dev' / '1' / '2'
  short = chapter / '1-2-0001.flac'
  sf.write(short, np.zeros(20000, np.int16), 16000, subtype='PCM_16')
  with pytest.raises(librispeech.DataError, match=f'{short}: 1.25 s is shorter than one receptive'):
    list(librispeech.folder_examples(tmp_path / 'dev'))
  sf.write(short, np.zeros(30000, np.int16), 8000, subtype='PCM_16')
  with pytest.raises(librispeech.DataError, match='sample rate 8000 Hz'):
    list(librispeech.folder_examples(tmp_path / 'dev'))
  short.unlink()
  with pytest.raises(librispeech.DataError, match=r"line 2 \('1-2-0001'\): transcript line without"):
    list(librispeech.folder_examples(tmp_path / 'dev'))
  with pytest.raises(librispeech.DataError, match='does not exist'):
    librispeech.split_folders(tmp_path / 'nowhere')


def test_fingerprint_follows_audio_and_transcripts_only(tmp_path, write_split):
  write_split(tmp_path, 'dev', ['cat', 'dog'], timings=True)
  first = librispeech.folder_fingerprint(tmp_path)
  (tmp_path / 'dev' / '1' / '2' / '1-2-0000.timing.json').write_text('{}')
  assert librispeech.folder_fingerprint(tmp_path) == first  # timing files do not count
  transcript = tmp_path / 'dev' / '1' / '2' / '1-2.trans.txt'
  transcript.write_text(transcript.read_text().replace('DOG', 'DOGS'))
  assert librispeech.folder_fingerprint(tmp_path) != first


def test_unclear_transcripts_get_clear_messages_or_are_read(tmp_path, write_split):
  write_split(tmp_path, 'dev', ['cat', 'dog'])
  transcript = tmp_path / 'dev' / '1' / '2' / '1-2.trans.txt'
  # A byte-order mark and a tab after the id are read as a text editor writes them.
  transcript.write_bytes(b'\xef\xbb\xbf1-2-0000 CAT\n1-2-0001\tDOG\n')
  assert [e['text'] for e in librispeech.folder_examples(tmp_path / 'dev')] == ['CAT', 'DOG']
  transcript.write_bytes('1-2-0000 CAT\n1-2-0001 CAF\xc9\n'.encode('latin-1'))
  with pytest.raises(librispeech.DataError, match=rf'{transcript}, line 2: not UTF-8 text '
                                             r'\(byte 0xc9 at offset 25\)'):
    list(librispeech.folder_examples(tmp_path / 'dev'))
  transcript.write_text('1-2-0000 CAT\n1-2\u20130001 DOG\n')
  with pytest.raises(librispeech.DataError, match=r"line 2 \('1-2–0001'\): .* has character '–' "
                                             r'\(U\+2013\) at position 3'):
    list(librispeech.folder_examples(tmp_path / 'dev'))
  transcript.write_text('1-2-0000 CAT\n1-2-0001 DOG\n')
  (tmp_path / 'dev' / '1' / '2' / '1-2-0001.flac').write_bytes(b'')
  with pytest.raises(librispeech.DataError, match=r'1-2-0001.flac: empty file \(0 bytes\)'):
    list(librispeech.folder_examples(tmp_path / 'dev'))


def test_engine_audio_becomes_int16_at_16_khz():
  # At 16 kHz only scaled, rounded and clipped: full scale 1.0 -> 32768 clips to 32767.
  np.testing.assert_array_equal(librispeech.to_int16(np.array([0.5, -1.0, 1.0, 1e-5]), 16000),
                                np.array([16384, -32768, 32767, 0], np.int16))
  assert librispeech.to_int16(np.array([1.0]), 16000, full_scale=32767)[0] == 32767
  # Another rate is resampled: a 100 Hz sine at 8 kHz keeps its frequency and level at 16 kHz.
  t = np.arange(8000) / 8000
  out = librispeech.to_int16(0.5 * np.sin(2 * np.pi * 100 * t), 8000)
  assert out.dtype == np.int16 and len(out) == 16000
  expected = 0.5 * 32768 * np.sin(2 * np.pi * 100 * np.arange(16000) / 16000)
  np.testing.assert_allclose(out[1000:-1000], expected[1000:-1000], atol=60)


def test_recode_corpus_sends_the_named_splits_through_opus(tmp_path, write_split):
  source = tmp_path / 'corpus'
  train_ids = write_split(source, 'train', ['cat', 'a dog'], timings=True)
  test_ids = write_split(source, 'test', ['bee'])
  (source / 'corpus.json').write_text('{"splits": {}}\n')
  assert librispeech.recode_corpus(source, tmp_path / 'opus', ['train'], kbps=23.5) == 2

  def audio(root, split, utt):
    return sf.read(root / split / '1' / '2' / f'{utt}.flac', dtype='int16')[0]

  for name in ('corpus.json', 'train/1/2/1-2.trans.txt', f'train/1/2/{train_ids[0]}.timing.json',
               f'test/1/2/{test_ids[0]}.flac'):
    assert (tmp_path / 'opus' / name).read_bytes() == (source / name).read_bytes(), name
  for utt in train_ids:
    original, coded = audio(source, 'train', utt), audio(tmp_path / 'opus', 'train', utt)
    error = np.linalg.norm(coded - original.astype(float)) / np.linalg.norm(original)
    assert len(coded) == len(original) and 0 < error < 0.5, error
  assert [e['text'] for e in librispeech.folder_examples(tmp_path / 'opus' / 'train')] == [
      'CAT', 'A DOG']

  # Kept as Ogg (smaller), then back to FLAC: the same samples as the round trip in one go.
  librispeech.recode_corpus(source, tmp_path / 'ogg', ['train'], kbps=23.5, keep_ogg=True,
                            workers=2)
  ogg = tmp_path / 'ogg' / 'train' / '1' / '2'
  assert not list(ogg.glob('*.flac')) and len(list(ogg.glob('*.ogg'))) == 2
  assert (ogg / f'{train_ids[1]}.ogg').stat().st_size < (
      source / 'train' / '1' / '2' / f'{train_ids[1]}.flac').stat().st_size
  librispeech.recode_corpus(tmp_path / 'ogg', tmp_path / 'back', ['train'], kbps=23.5)
  for utt in train_ids:
    np.testing.assert_array_equal(audio(tmp_path / 'back', 'train', utt),
                                  audio(tmp_path / 'opus', 'train', utt))

  # An interrupted copy is finished by the same call; another call on it is refused.
  first = tmp_path / 'opus' / 'train' / '1' / '2' / f'{train_ids[0]}.flac'
  written = first.read_bytes()
  first.unlink()
  (tmp_path / 'opus' / 'test' / '1' / '2' / f'{test_ids[0]}.flac.tmp').write_bytes(b'half')
  assert librispeech.recode_corpus(source, tmp_path / 'opus', ['train'], kbps=23.5) == 2
  assert first.read_bytes() == written and not list((tmp_path / 'opus').glob('**/*.tmp'))
  assert librispeech.opus_level(23.5) == pytest.approx(0.93)
  with pytest.raises(librispeech.DataError, match='something other than this copy'):
    librispeech.recode_corpus(source, tmp_path / 'opus', ['train'], kbps=32)
  with pytest.raises(librispeech.DataError, match='something other than this copy'):
    librispeech.recode_corpus(tmp_path / 'ogg', source, ['train'])
  with pytest.raises(librispeech.DataError, match='no split folder.*dev'):
    librispeech.recode_corpus(source, tmp_path / 'new', ['train', 'dev'])
  with pytest.raises(ValueError, match='6 to 256'):
    librispeech.recode_corpus(source, tmp_path / 'new', ['train'], kbps=500)


def test_g722_round_trip_keeps_the_sound_where_it_was():
  rng = np.random.default_rng(0)
  t = np.arange(16000) / 16000
  speech_like = sum(np.sin(2 * np.pi * f * t + p) for f, p in
                    zip((220, 700, 1300, 2700, 5200), rng.uniform(0, 6, 5)))
  samples = (3000 * speech_like + 300 * rng.normal(size=len(t))).astype(np.int16)
  out = librispeech.g722_round_trip(samples)
  assert out.dtype == np.int16 and len(out) == len(samples)

  def error(lag):  # relative error with the output shifted by `lag` samples
    a, b = samples[100:-100].astype(float), np.roll(out, lag)[100:-100].astype(float)
    return np.linalg.norm(a - b) / np.linalg.norm(a)

  assert 0 < error(0) < 0.1, error(0)  # lossy, and aligned with the input:
  assert error(0) < min(error(lag) for lag in (-2, -1, 1, 2, librispeech.G722_DELAY)) / 2
  assert len(librispeech.g722_round_trip(samples[:1000], kbps=48)) == 1000
  with pytest.raises(ValueError, match='48.0, 56.0, 64.0'):
    librispeech.g722_round_trip(samples, kbps=32)


def test_recode_corpus_through_g722(tmp_path, write_split):
  source = tmp_path / 'corpus'
  test_ids = write_split(source, 'test', ['cat', 'a dog'], timings=True)
  train_ids = write_split(source, 'train', ['bee'])
  assert librispeech.recode_corpus(source, tmp_path / 'g722', ['test'], codec='g722') == 2
  folder = Path('test') / '1' / '2'
  for name in (folder / '1-2.trans.txt', folder / f'{test_ids[0]}.timing.json',
               Path('train') / '1' / '2' / f'{train_ids[0]}.flac'):
    assert (tmp_path / 'g722' / name).read_bytes() == (source / name).read_bytes(), name
  for utt in test_ids:
    original = sf.read(source / folder / f'{utt}.flac', dtype='int16')[0]
    coded = sf.read(tmp_path / 'g722' / folder / f'{utt}.flac', dtype='int16')[0]
    np.testing.assert_array_equal(coded, librispeech.g722_round_trip(original))
  assert json.loads((tmp_path / 'g722' / librispeech.RECODED).read_text())['kbps'] == 64.0
  with pytest.raises(librispeech.DataError, match='something other than this copy'):
    librispeech.recode_corpus(source, tmp_path / 'g722', ['test'])  # Opus on a G.722 copy
  with pytest.raises(ValueError, match='keep_ogg writes Ogg/Opus files, not g722'):
    librispeech.recode_corpus(source, tmp_path / 'new', ['test'], codec='g722', keep_ogg=True)
  with pytest.raises(ValueError, match="Codec 'mp3'"):
    librispeech.recode_corpus(source, tmp_path / 'new', ['test'], codec='mp3')
