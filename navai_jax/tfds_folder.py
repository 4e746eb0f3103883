"""A folder in LibriSpeech layout (`layout`) as a tensorflow-datasets builder.

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

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from navai_jax import files
from navai_jax import layout


# Random access (`builder.as_data_source`) needs ArrayRecord files.
FILE_FORMAT = 'array_record'


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """Builder config of one folder (or one of its split folders); `name` is derived from the
  folder's absolute path and the split folder's name."""
  folder: str = ''
  split: str = ''  # one split folder; '' = all of them


def folder_config(folder: str | os.PathLike, split: str = '') -> FolderConfig:
  """The builder config of `folder` (only its split folder `split` when given), named
  `<basename>[_<split>]_<hash of the absolute path and split>`."""
  path = Path(folder).expanduser().resolve()
  named = f'{path}/{split}' if split else str(path)
  digest = hashlib.sha1(named.encode()).hexdigest()[:12]
  slug = '_'.join(re.sub(r'\W+', '_', part.lower()).strip('_')
                  for part in (path.name, split) if part) or 'root'
  return FolderConfig(name=f'{slug}_{digest}',
                      description=f'LibriSpeech-layout folder {path}' + (f', split folder {split}'
                                                                          if split else ''),
                      folder=str(path), split=split)


class LibrispeechFolder(tfds.core.GeneratorBasedBuilder):
  """A folder in LibriSpeech layout as a TFDS dataset with the standard LibriSpeech features.

  Construct with `config=folder_config(path)`; `prepared_folder_builder` does that and
  rebuilds when the folder changed. Its examples are `layout.folder_examples` of each split
  folder, so building is exactly as strict as that function.
  """

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'speech': tfds.features.Audio(dtype=np.int16, sample_rate=layout.SAMPLE_RATE),
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
    return {layout.tfds_split_name(d.name): self._generate_examples(d)
            for d in layout.split_folders(Path(self.builder_config.folder))
            if d.name == self.builder_config.split or not self.builder_config.split}

  def _generate_examples(self, split_dir: Path):
    for example in layout.folder_examples(split_dir):
      yield example['id'], example


def prepared_folder_builder(folder: str | os.PathLike, data_dir: str = '',
                            split: str = '') -> LibrispeechFolder:
  """The builder of `folder` (of its split folder `split` only, when given), prepared into
  ArrayRecord files (again, if its files changed since the last build).

  `sources` prepares each split folder with a builder of its own, so that an interrupted
  preparation of a corpus keeps the split folders it finished and a changed split folder is
  prepared again alone.

  Args:
    folder: root of the LibriSpeech-layout corpus.
    data_dir: where TFDS keeps the prepared data; '' means `folder/_tfds`.
    split: a split folder's name, or '' for all of them in one builder.
  """
  root = Path(folder).expanduser().resolve()
  data_dir = data_dir or str(root / '_tfds')
  # The stamp names the file format too, so that data prepared as TFRecords is prepared again.
  names = [split] if split else None
  fingerprint = f'{layout.folder_fingerprint(root, names)} {FILE_FORMAT}'
  builder = LibrispeechFolder(config=folder_config(root, split), data_dir=data_dir)
  stamp = Path(builder.data_dir) / 'folder_fingerprint.txt'
  if stamp.is_file() and stamp.read_text() == fingerprint:
    return builder
  if Path(builder.data_dir).exists():
    logging.info('Corpus %s changed since it was prepared; rebuilding.', root / split)
    shutil.rmtree(builder.data_dir)
    builder = LibrispeechFolder(config=folder_config(root, split), data_dir=data_dir)
  logging.info('Preparing %s into %s.', root / split, builder.data_dir)
  builder.download_and_prepare(file_format=FILE_FORMAT)
  files.write_text(stamp, fingerprint)
  return builder
