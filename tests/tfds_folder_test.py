"""The TFDS builder of a LibriSpeech-layout folder: one builder config per folder, rebuilt when
the folder changes, read through `data.load_split`."""

from pathlib import Path

import numpy as np
import pytest

from navai_jax.speech import data
from navai_jax.speech import tfds_folder
from navai_jax.configs import default


def _noise(write_split, root, split, texts, seconds, rng, **kw):
  return write_split(root, split, texts, audio=lambda i, _: (0.2 * rng.normal(
      size=int(16000 * seconds[i]))).astype(np.float32), **kw)


def _config(root, tfds_data_dir):
  config = default.get_config('tiny')
  config.data.source = f'folder:{root}'
  config.data.tfds_data_dir = tfds_data_dir
  return config


def _fail_on(culprit, load):
  """`load()` with `culprit` damaged fails naming it; then the file is mended."""
  good = culprit.read_bytes()
  culprit.write_bytes(b'not audio')
  with pytest.raises(data.DataError, match=culprit.name):
    load()
  culprit.write_bytes(good)


def _preparations(monkeypatch, field):
  """The builder config `field` of every preparation from here on, in order."""
  prepared = []
  real = tfds_folder.LibrispeechFolder.download_and_prepare
  monkeypatch.setattr(tfds_folder.LibrispeechFolder, 'download_and_prepare',
                      lambda self, **kw: prepared.append(getattr(self.builder_config, field)) or
                      real(self, **kw))
  return prepared


def test_folder_config_is_named_by_the_absolute_path(tmp_path):
  a, b = tfds_folder.folder_config(tmp_path / 'My Corpus'), tfds_folder.folder_config(tmp_path)
  assert a.name.startswith('my_corpus_') and a.name != b.name
  assert a.folder == str((tmp_path / 'My Corpus').resolve())


def test_librispeech_names_separate_folders_and_rebuild(tmp_path, write_split):
  rng = np.random.default_rng(1)
  a, b = tmp_path / 'a' / 'LibriSpeech', tmp_path / 'b'
  _noise(write_split, a, 'dev-clean', ['hello'], [1.8], rng, speaker=84, chapter=121123)
  _noise(write_split, a, 'train-clean-100', ['world'], [1.8], rng, speaker=84, chapter=121124)
  _noise(write_split, b, 'dev', ['hello', 'world'], [1.8, 1.9], rng, speaker=84, chapter=121123)
  shared = str(tmp_path / 'tfds')
  config_a, config_b = _config(a, shared), _config(b, shared)
  assert list(data.load_split(config_a, 'dev').ids) == ['84-121123-0000']
  assert list(data.load_split(config_a, 'train').ids) == ['84-121124-0000']
  assert len(data.load_split(config_a, 'dev-clean+train-clean-100')) == 2
  assert len(data.load_split(config_b, 'dev')) == 2
  # A builder per split folder: a's two and b's one.
  assert len(list(Path(shared, 'librispeech_folder').iterdir())) == 3
  _noise(write_split, a, 'dev-clean', ['hello', 'speech'], [1.8, 2.0], rng, speaker=84,
         chapter=121123)
  assert list(data.load_split(config_a, 'dev').ids) == ['84-121123-0000', '84-121123-0001']


def test_a_flac_replaced_by_one_of_the_same_size_is_read_anew(tmp_path, write_split):
  """Constant audio compresses to the same number of bytes whatever the constant."""
  constant = lambda value: (lambda i, _: np.full(30000, value, np.float32))
  write_split(tmp_path / 'c', 'dev', ['hello', 'world'], audio=constant(0.25))
  config = _config(tmp_path / 'c', str(tmp_path / 'tfds'))
  flac = tmp_path / 'c' / 'dev' / '1' / '2' / '1-2-0001.flac'
  size = flac.stat().st_size
  assert data.load_split(config, 'dev').audio(1)[0] == 0.25
  write_split(tmp_path / 'other', 'dev', ['hello', 'world'], audio=constant(-0.5))
  replacement = tmp_path / 'other' / 'dev' / '1' / '2' / '1-2-0001.flac'
  assert replacement.stat().st_size == size
  replacement.replace(flac)
  tfds_read = data.load_split(config, 'dev').audio(1)
  config.data.reader = 'direct'
  direct_read = data.load_split(config, 'dev').audio(1)
  assert tfds_read[0] == -0.5
  np.testing.assert_array_equal(tfds_read, direct_read)


def test_an_interrupted_preparation_keeps_the_split_folders_it_finished(tmp_path, write_split,
                                                                        monkeypatch):
  rng = np.random.default_rng(2)
  root = tmp_path / 'corpus'
  _noise(write_split, root, 'dev', ['hello', 'world'], [1.8, 1.9], rng)
  _noise(write_split, root, 'train', ['speech', 'letter'], [1.8, 2.0], rng, speaker=7)
  config = _config(root, '')
  _fail_on(root / 'train' / '7' / '2' / '7-2-0001.flac', lambda: data.load_split(config,
                                                                                 'dev+train'))
  prepared = _preparations(monkeypatch, 'split')
  both = data.load_split(config, 'dev+train')
  assert prepared == ['train']  # dev was finished before the failure and is not redone
  assert list(both.ids) == ['1-2-0000', '1-2-0001', '7-2-0000', '7-2-0001']
  config.data.reader = 'direct'
  direct = data.load_split(config, 'dev+train')
  for u in range(4):
    np.testing.assert_array_equal(both.read(u), direct.read(u))


def test_an_interrupted_preparation_keeps_the_shards_it_finished(tmp_path, write_split,
                                                                 monkeypatch):
  """A split folder is prepared in shards of `data.shard_speakers` speakers; a shard that
  failed is the only one prepared again, and the shards together are the split folder."""
  rng = np.random.default_rng(3)
  root = tmp_path / 'corpus'
  for speaker in (3, 5, 8):
    _noise(write_split, root, 'train', ['speech', 'letter'], [1.8, 1.9], rng, speaker=speaker)
  config = _config(root, '')
  config.data.shard_speakers = 1
  assert tfds_folder.shards(root / 'train', 2) == [('3', '5'), ('8',)]
  (root / 'train' / 'README.txt').write_text('not part of the layout')
  (root / 'train' / 'stray.flac').write_bytes(b'')
  assert tfds_folder.shards(root / 'train', 2) == [('stray.flac', '3', '5'), ('8',)]
  (root / 'train' / 'stray.flac').unlink()
  _fail_on(root / 'train' / '8' / '2' / '8-2-0001.flac', lambda: data.load_split(config,
                                                                                 'train'))
  prepared = _preparations(monkeypatch, 'entries')
  sharded = data.load_split(config, 'train')
  assert prepared == [('8',)]  # speakers 3 and 5 were finished before the failure
  assert len(list((root / '_tfds' / 'librispeech_folder').iterdir())) == 3
  config.data.reader = 'direct'
  direct = data.load_split(config, 'train')
  assert list(sharded.ids) == list(direct.ids) and len(sharded) == 6
  for u in range(len(sharded)):
    np.testing.assert_array_equal(sharded.read(u), direct.read(u))


def test_a_slice_takes_the_same_utterances_however_the_split_is_sharded(tmp_path, write_split):
  rng = np.random.default_rng(4)
  root = tmp_path / 'corpus'
  for speaker in range(1, 5):
    _noise(write_split, root, 'train', ['a', 'b', 'c'], [1.8] * 3, rng, speaker=speaker)
  taken = {}
  for per_shard in (1, 3, 50):
    config = _config(root, str(tmp_path / f'tfds{per_shard}'))
    config.data.shard_speakers = per_shard
    taken[per_shard] = [list(data.load_split(config, f'train{s}').ids)
                        for s in ('[:50%]', '[50%:]', '[2:5]')]
  assert taken[1] == taken[3] == taken[50]
  half, rest, three = taken[1]
  assert len(half) == len(rest) == 6 and not set(half) & set(rest) and len(three) == 3
  assert len({u.split('-')[0] for u in half}) > 1  # a percentage mixes speakers
  config.data.shard_speakers = 0
  with pytest.raises(ValueError, match='shard_speakers'):
    data.load_split(config, 'train')
