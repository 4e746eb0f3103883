"""Sources: a split is an index and reads audio only when asked; LibriSpeech's own layout with
its seven split names; a file that goes bad after indexing is named when it is read."""

import json
from pathlib import Path
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from navai_jax.speech import data
from navai_jax.speech import librispeech
from navai_jax.speech import sources
from navai_jax.configs import default


def _noise(rng, seconds):
  n = int(seconds * 16000)
  return (3000 * rng.normal(size=n)).clip(-32768, 32767).astype(np.int16)


def _librispeech(root: Path) -> dict[str, list[str]]:
  """LibriSpeech/SPLIT/SPEAKER/CHAPTER/... for all seven splits, one chapter of two each."""
  rng = np.random.default_rng(0)
  ids = {}
  for k, split in enumerate(sources.LIBRISPEECH_SPLITS):
    speaker, chapter = 100 + k, 2000 + k
    folder = root / 'LibriSpeech' / split / str(speaker) / str(chapter)
    folder.mkdir(parents=True)
    lines = []
    for u in range(2):
      utt_id = f'{speaker}-{chapter}-{u:04d}'
      sf.write(folder / f'{utt_id}.flac', _noise(rng, 1.8 + 0.2 * u), 16000, subtype='PCM_16')
      lines.append(f'{utt_id} SPLIT {"ABCDEFG"[k]} PART {"ONE TWO".split()[u]}')
    (folder / f'{speaker}-{chapter}.trans.txt').write_text('\n'.join(lines) + '\n')
    ids[split] = [line.split()[0] for line in lines]
  return ids


def _config(root: Path, reader: str):
  config = default.get_config('tiny')
  config.data.source = f'folder:{root / "LibriSpeech"}'
  config.data.reader = reader
  return config


@pytest.mark.parametrize('reader', sources.READERS)
def test_librispeech_layout_with_its_seven_split_names(tmp_path, reader):
  ids = _librispeech(tmp_path)
  config = _config(tmp_path, reader)
  for split, want in ids.items():
    assert list(data.load_split(config, split).ids) == want, split
  for short, split in sources.FOLDER_LIBRISPEECH_SPLITS.items():
    assert list(data.load_split(config, short).ids) == ids[split]
  both = data.load_split(config, 'train-clean-360+train-other-500')
  assert list(both.ids) == ids['train-clean-360'] + ids['train-other-500']
  assert [both.text(u) for u in range(4)] == ['split f part one', 'split f part two',
                                              'split g part one', 'split g part two']
  with pytest.raises(data.DataError, match="No split folder 'train-other-960'.*dev-clean, dev-other"):
    data.load_split(config, 'train-other-960')


def _tfds_librispeech(folder: Path, data_dir: Path, file_format: str) -> Path:
  """The folder prepared as TFDS's own `librispeech` dataset in `data_dir`, in its real layout
  (`librispeech/default/2.1.1/librispeech-train_clean100.tfrecord-00000-of-00001`, ...).

  The folder builder writes the same features as TFDS's LibriSpeech builder, so its files,
  renamed to LibriSpeech's dataset and split names, are what `tfds build librispeech` leaves.
  """
  from navai_jax.speech import tfds_folder  # pylint: disable=g-import-not-at-top
  builder = tfds_folder.LibrispeechFolder(config=tfds_folder.folder_config(folder),
                                          data_dir=str(data_dir / '_build'))
  builder.download_and_prepare(file_format=file_format)
  prepared, target = Path(builder.data_dir), data_dir / 'librispeech' / 'default' / '2.1.1'
  target.mkdir(parents=True)
  tfds_name = lambda name: re.sub(r'_(\d)', r'\1', name)  # train_clean_100 -> train_clean100
  for f in prepared.glob('librispeech_folder-*'):
    dataset_split, rest = f.name.split('.', 1)
    shutil.copy(f, target / f'librispeech-{tfds_name(dataset_split.split("-", 1)[1])}.{rest}')
  info = json.loads((prepared / 'dataset_info.json').read_text())
  info.update(name='librispeech', configName='default', version='2.1.1')
  for split in info['splits']:
    split['name'] = tfds_name(split['name'])
  (target / 'dataset_info.json').write_text(json.dumps(info))
  shutil.copy(prepared / 'features.json', target / 'features.json')
  shutil.rmtree(data_dir / '_build')
  return target


@pytest.mark.parametrize('file_format', ['tfrecord', 'array_record'])
def test_tfds_librispeech_is_read_at_random_in_either_file_format(tmp_path, file_format,
                                                                  monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ids = _librispeech(tmp_path)
  folder = _config(tmp_path, 'direct')
  prepared = _tfds_librispeech(tmp_path / 'LibriSpeech', tmp_path / 'tfds', file_format)
  config = default.get_config('tiny')
  config.data.source = 'tfds:librispeech'
  config.data.tfds_data_dir = str(tmp_path / 'tfds')
  # Nothing is streamed through tf.data: records are read one by one where they lie.
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'as_dataset',
                      lambda *a, **k: pytest.fail('as_dataset was called'))
  tfds_names = {'train': 'train_clean100+train_clean360', 'dev': 'dev_clean',
                'test': 'test_clean', 'train_other500': 'train_other500',
                'dev_other': 'dev_other', 'test_other': 'test_other'}
  for name, parts in tfds_names.items():
    split = data.load_split(config, name)
    want = sum((ids[re.sub(r'(\D)(\d)', r'\1-\2', p).replace('_', '-')]
                for p in parts.split('+')), [])
    assert list(split.ids) == want, name
    direct = data.load_split(folder, re.sub(r'(\D)(\d)', r'\1-\2', parts.split('+')[0]
                                            ).replace('_', '-'))
    for u, utt_id in enumerate(direct.ids):
      np.testing.assert_array_equal(split.read(split.index(utt_id)), direct.read(u))
      assert split.text(split.index(utt_id)) == direct.text(u)
  # A slice counts records as TFDS stored them (shuffled), not in id order.
  dev = data.load_split(config, 'dev_clean')
  assert list(data.load_split(config, 'dev_clean[1:]').ids) == list(dev.ids[dev.records_of >= 1])
  with pytest.raises(data.DataError, match="no split 'train_other960'.*its splits: dev_clean"):
    data.load_split(config, 'train_other960')
  batch = next(data.batches(config, 'train', train=True))
  assert batch['audio'].shape[0] >= 1 and np.isfinite(batch['audio']).all()
  if file_format == 'tfrecord':
    # A shard cut short is named, with the record that runs past its end.
    shard = next(prepared.glob('librispeech-test_other.tfrecord-*'))
    shard.write_bytes(shard.read_bytes()[:-100])
    monkeypatch.setattr(sources, '_SPLITS', {})  # forget the indexes this process made
    with pytest.raises(data.DataError, match=f'{shard}: not a whole TFRecord file '
                                             r'\(record 1 at byte'):
      data.load_split(config, 'test_other')


def test_an_index_reads_no_audio_and_batches_read_only_their_rows(tmp_path, monkeypatch):
  _librispeech(tmp_path)
  config = _config(tmp_path, 'direct')
  config.data.read_threads = 0
  reads = []
  original = librispeech.read_flac
  monkeypatch.setattr(librispeech, 'read_flac', lambda path: reads.append(path.name) or original(path))
  split = data.load_split(config, 'train-clean-100+train-clean-360+train-other-500')
  assert reads == [] and len(split) == 6
  whole = next(data.batches(config, split='train-clean-100+train-clean-360+train-other-500',
                            train=True, seed=3, batch_multiple=2))
  read_for_whole = len(reads)
  assert read_for_whole == len(whole['weights'])
  blocks = [next(data.batches(config, 'train-clean-100+train-clean-360+train-other-500',
                              train=True, seed=3, batch_multiple=2, process_index=p,
                              process_count=2)) for p in range(2)]
  assert len(reads) == 2 * read_for_whole  # the two blocks together read one batch's rows
  size = len(whole['weights'])
  for p, block in enumerate(blocks):
    assert list(block['rows']) == [p * size // 2, size]
    rows = slice(p * size // 2, (p + 1) * size // 2)
    for key in ('audio', 'labels', 'id', 'text', 'weights'):
      np.testing.assert_array_equal(block[key], whole[key][rows], err_msg=key)
  assert split.hours == pytest.approx(sum(split.lengths) / 16000 / 3600)


def test_a_file_damaged_after_indexing_is_named_when_read(tmp_path):
  ids = _librispeech(tmp_path)
  config = _config(tmp_path, 'direct')
  split = data.load_split(config, 'dev-other')
  path = next((tmp_path / 'LibriSpeech' / 'dev-other').rglob(f'{ids["dev-other"][1]}.flac'))
  path.write_bytes(b'not audio any more')
  split.read(0)
  with pytest.raises(data.DataError, match=f'{path}: cannot read audio'):
    split.read(1)
  config.data.read_threads = 2
  with pytest.raises(data.DataError, match=f'{path}: cannot read audio'):
    list(data.batches(config, 'dev-other', train=False))


def test_share_and_process_arguments_are_checked(tmp_path):
  _librispeech(tmp_path)
  config = _config(tmp_path, 'direct')
  with pytest.raises(ValueError, match='multiple of the process count'):
    next(data.batches(config, 'dev-clean', train=True, batch_multiple=3, process_count=2,
                      process_index=1))
  with pytest.raises(ValueError, match='share must be'):
    next(data.batches(config, 'dev-clean', train=False, share=(2, 2)))
  config.data.batch_seconds = 1.0  # one utterance per batch
  every = [list(b['id']) for b in data.batches(config, 'dev-clean+dev-other', train=False)]
  assert len(every) == 4
  for k in range(2):
    share = [list(b['id']) for b in data.batches(config, 'dev-clean+dev-other', train=False,
                                                 share=(k, 2))]
    assert share == every[k::2]
