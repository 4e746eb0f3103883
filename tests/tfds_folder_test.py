"""The TFDS builder of a LibriSpeech-layout folder: one builder config per folder, rebuilt when
the folder changes, read through `data.load_split`."""

from pathlib import Path

import numpy as np

from navai_jax import data
from navai_jax import tfds_folder
from navai_jax.configs import default


def _noise(write_split, root, split, texts, seconds, rng, **kw):
  return write_split(root, split, texts, audio=lambda i, _: (0.2 * rng.normal(
      size=int(16000 * seconds[i]))).astype(np.float32), **kw)


def _config(root, tfds_data_dir):
  config = default.get_config('tiny')
  config.data.source = f'folder:{root}'
  config.data.tfds_data_dir = tfds_data_dir
  return config


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
  assert len(list(Path(shared, 'librispeech_folder').iterdir())) == 2
  _noise(write_split, a, 'dev-clean', ['hello', 'speech'], [1.8, 2.0], rng, speaker=84,
         chapter=121123)
  assert list(data.load_split(config_a, 'dev').ids) == ['84-121123-0000', '84-121123-0001']
