"""A folder in LibriSpeech layout (`librispeech`) as a tensorflow-datasets builder.

`sources.load_split` reaches every `folder:PATH` source through `prepared_folder_builder` (with
`config.data.reader = 'tfds'`, the default). This module is the only one of the library that
needs TensorFlow at import time for folder sources; `data` imports it when a split is first
loaded, so the rest of the library (and `reader = 'direct'`) runs where TensorFlow is absent.
"""

import dataclasses
import hashlib
import os
from pathlib import Path
import re
import shutil
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from navai_jax.core import files
from navai_jax.speech import librispeech


# Random access (`builder.as_data_source`) needs ArrayRecord files.
FILE_FORMAT = 'array_record'


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """Builder config of one folder (or one of its split folders, or a shard of one); `name` is
  derived from the folder's absolute path, the split folder's name and the shard."""
  folder: str = ''
  split: str = ''  # one split folder; '' = all of them
  entries: tuple[str, ...] = ()  # the shard: entries (speaker folders) of `split`; () = all


def folder_config(folder: str | os.PathLike, split: str = '',
                  entries: Sequence[str] = ()) -> FolderConfig:
  """The builder config of `folder` (only its split folder `split` when given; only that
  folder's `entries` when given), named `<basename>[_<split>][_<first>-<last>]_<hash>`, the
  hash of the absolute path, the split and the entries."""
  path = Path(folder).expanduser().resolve()
  entries = tuple(entries)
  if entries and not split:
    raise ValueError('A shard (entries) belongs to one split folder; give split too.')
  named = f'{path}/{split}' if split else str(path)
  if entries:
    named += '\0' + '\0'.join(entries)
  digest = hashlib.sha1(named.encode()).hexdigest()[:12]
  shard = f'{entries[0]}-{entries[-1]}' if entries else ''
  slug = '_'.join(re.sub(r'\W+', '_', part.lower()).strip('_')
                  for part in (path.name, split, shard) if part) or 'root'
  described = (f', split folder {split}' if split else '') + (
      f', entries {entries[0]} to {entries[-1]} ({len(entries)})' if entries else '')
  return FolderConfig(name=f'{slug}_{digest}',
                      description=f'LibriSpeech-layout folder {path}{described}',
                      folder=str(path), split=split, entries=entries)


def shards(split_dir: str | os.PathLike, per_shard: int) -> list[tuple[str, ...]]:
  """The speaker folders of a split folder in sorted order, cut into groups of `per_shard`:
  each group is prepared by a builder of its own, so an interrupted preparation keeps the
  groups it finished. Audio or transcripts lying in the split folder itself (outside the
  layout) go with the first group, so that they are checked as the `direct` reader checks
  them; other files there are ignored by both readers and by every shard."""
  if per_shard < 1:
    raise ValueError(f'data.shard_speakers must be >= 1, got {per_shard}.')
  entries = sorted(Path(split_dir).iterdir())
  folders = [e.name for e in entries if e.is_dir()]
  stray = tuple(e.name for e in entries
                if e.is_file() and e.name.endswith(('.flac', '.trans.txt')))
  groups = [tuple(folders[i:i + per_shard]) for i in range(0, len(folders), per_shard)] or [()]
  return [stray + groups[0]] + groups[1:]


class LibrispeechFolder(tfds.core.GeneratorBasedBuilder):
  """A folder in LibriSpeech layout as a TFDS dataset with the standard LibriSpeech features.

  Construct with `config=folder_config(path)`; `prepared_folder_builder` does that and
  rebuilds when the folder changed. Its examples are `librispeech.folder_examples` of each split
  folder, so building is exactly as strict as that function.
  """

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'speech': tfds.features.Audio(dtype=np.int16, sample_rate=librispeech.SAMPLE_RATE),
            'text': tfds.features.Text(),
            'speaker_id': np.int64,
            'chapter_id': np.int64,
            'id': np.str_,
        }),
        supervised_keys=('speech', 'text'))

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    if not isinstance(self.builder_config, FolderConfig) or not self.builder_config.folder:
      raise ValueError('LibrispeechFolder needs config=folder_config(path).')
    config = self.builder_config
    return {librispeech.tfds_split_name(d.name): self._generate_examples(d, config.entries or None)
            for d in librispeech.split_folders(Path(config.folder))
            if d.name == config.split or not config.split}

  def _generate_examples(self, split_dir: Path, entries):
    for example in librispeech.folder_examples(split_dir, entries):
      yield example['id'], example


def prepared_folder_builder(folder: str | os.PathLike, data_dir: str = '',
                            split: str = '', entries: Sequence[str] = ()) -> LibrispeechFolder:
  """The builder of `folder` (of its split folder `split` only, when given; of that folder's
  `entries` only, when given), prepared into ArrayRecord files (again, if its files changed
  since the last build).

  `sources` prepares each split folder in shards of speakers (`shards`), each with a builder
  of its own, so that an interrupted preparation keeps the shards it finished and a changed
  shard is prepared again alone.

  Args:
    folder: root of the LibriSpeech-layout corpus.
    data_dir: where TFDS keeps the prepared data; '' means `folder/_tfds`.
    split: a split folder's name, or '' for all of them in one builder.
    entries: names of entries (speaker folders) of `split`; () for all of them.
  """
  root = Path(folder).expanduser().resolve()
  data_dir = data_dir or str(root / '_tfds')
  # The stamp names the file format too, so that data prepared as TFRecords is prepared again.
  names = [split] if split else None
  fingerprint = (f'{librispeech.folder_fingerprint(root, names, tuple(entries) or None)} '
                 f'{FILE_FORMAT}')
  config = folder_config(root, split, entries)
  builder = LibrispeechFolder(config=config, data_dir=data_dir)
  stamp = Path(builder.data_dir) / 'folder_fingerprint.txt'
  if stamp.is_file() and stamp.read_text() == fingerprint:
    return builder
  where = root / split if split else root
  if Path(builder.data_dir).exists():
    logging.info('Corpus %s (%s) changed since it was prepared; rebuilding.', where,
                 config.description)
    shutil.rmtree(builder.data_dir)
    builder = LibrispeechFolder(config=config, data_dir=data_dir)
  logging.info('Preparing %s into %s.', config.description, builder.data_dir)
  builder.download_and_prepare(file_format=FILE_FORMAT)
  files.write_text(stamp, fingerprint)
  return builder
