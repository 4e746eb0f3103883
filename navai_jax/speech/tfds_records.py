"""TFDS splits read at random: ArrayRecord through TFDS's data source, TFRecord from the record
offsets of one scan of its files (`TfRecordSource`), and the index of a split (ids,
transcripts, speakers, lengths) built by one pass over its records and cached beside them."""

import os
from pathlib import Path
import re
from typing import Any, Optional

from absl import logging
import numpy as np

from navai_jax.core import files
from navai_jax.speech import librispeech

DataError = librispeech.DataError
# An index row: (id, text, speaker, chapter, samples, record).
Row = tuple[str, str, int, int, int, int]


class TfdsRecords:
  """Random access to the 'speech' of a TFDS data source (ArrayRecord or `TfRecordSource`)."""

  def __init__(self, source, where: str):
    self._source, self._where = source, where

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i: int) -> np.ndarray:
    try:
      return np.asarray(self._source[int(i)]['speech'])
    except Exception as e:  # pylint: disable=broad-except  (array_record raises several kinds)
      raise DataError(f'Record {i} of {self._where} cannot be read '
                      f'({type(e).__name__}: {e}).') from None


class TfRecordSource:
  """Random access to the examples of a TFDS split stored as TFRecord files.

  A TFRecord file is a sequence of records, each a uint64 length, a CRC of it, the bytes and
  their CRC; one scan of the headers (12 bytes read per record, the rest skipped) gives every
  record's offset, and an example is then one seek and one read, decoded with the dataset's
  features as TFDS decodes it (`deserialize_example_np`). Slices of a split ('train[:10%]')
  come from TFDS's own file instructions.
  """

  def __init__(self, info, split: str):
    self._features = info.features
    paths, file_of, offsets, sizes = [], [], [], []
    for instruction in info.splits[split].file_instructions:
      path = os.fspath(instruction.filename)
      record_offsets, record_sizes = tfrecord_offsets(path)
      end = None if instruction.take < 0 else instruction.skip + instruction.take
      take = slice(instruction.skip, end)
      offsets.append(record_offsets[take])
      sizes.append(record_sizes[take])
      file_of.append(np.full(len(offsets[-1]), len(paths)))
      paths.append(path)
    self._paths = paths
    self._file_of = np.concatenate(file_of or [np.zeros(0, np.int64)])
    self._offsets = np.concatenate(offsets or [np.zeros(0, np.int64)])
    self._sizes = np.concatenate(sizes or [np.zeros(0, np.int64)])

  def __len__(self) -> int:
    return len(self._offsets)

  def __getitem__(self, i: int) -> dict[str, Any]:
    with open(self._paths[self._file_of[i]], 'rb') as f:
      f.seek(int(self._offsets[i]))
      record = f.read(int(self._sizes[i]))
    return self._features.deserialize_example_np(record)


def tfrecord_offsets(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Offsets and sizes of the records of a TFRecord file, from their headers."""
  offsets, sizes = [], []
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    position = 0
    while position < size:
      header = f.read(12)
      length = int.from_bytes(header[:8], 'little') if len(header) == 12 else -1
      if length < 0 or position + 16 + length > size:
        raise DataError(f'{path}: not a whole TFRecord file (record {len(offsets)} at byte '
                        f'{position} runs past the end, {size} bytes).')
      offsets.append(position + 12)
      sizes.append(length)
      position += 16 + length
      f.seek(position)
  return np.array(offsets, np.int64), np.array(sizes, np.int64)


def index_rows(source, index_path: Optional[Path], where: str) -> list[Row]:
  """Index rows of a TFDS data source: one pass over its records, cached at `index_path`."""
  if index_path is not None and index_path.is_file():
    with np.load(index_path) as saved:
      return [(str(i), str(t), int(s), int(c), int(n), int(r)) for i, t, s, c, n, r in zip(
          saved['ids'], saved['texts'], saved['speakers'], saved['chapters'], saved['lengths'],
          saved['records'])]
  logging.info('Indexing %s (%d records).', where, len(source))
  rows = []
  for r in range(len(source)):
    ex = source[r]
    rows.append((as_str(ex['id']), as_str(ex['text']), int(ex['speaker_id']), int(ex['chapter_id']),
                 int(np.shape(ex['speech'])[0]), r))
  if index_path is not None:
    columns = list(zip(*rows)) if rows else [[]] * 6
    with files.atomic(index_path) as tmp, open(tmp, 'wb') as f:
      np.savez(f, ids=np.array(columns[0], str), texts=np.array(columns[1], str),
               speakers=np.array(columns[2], np.int64), chapters=np.array(columns[3], np.int64),
               lengths=np.array(columns[4], np.int64), records=np.array(columns[5], np.int64))
  return rows


def as_str(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


class Concatenated:
  """Records of several sources one after another."""

  def __init__(self, parts: list):
    self._parts = parts
    self._starts = np.cumsum([0] + [len(p) for p in parts])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, i: int) -> np.ndarray:
    k = int(np.searchsorted(self._starts, i, side='right')) - 1
    return self._parts[k][int(i) - int(self._starts[k])]


def split_records(builder, split: str, index_dir: Optional[Path], where: str
                ) -> tuple[list[Row], Any]:
  """Index rows and records of a split of a prepared TFDS builder ('+' parts allowed), read
  at random from its ArrayRecord or TFRecord files."""
  # Datasets prepared before TFDS recorded a format are TFRecord.
  file_format = getattr(builder.info.file_format, 'value', None) or 'tfrecord'
  if file_format not in ('array_record', 'tfrecord'):
    raise DataError(f'{where} is stored as {file_format}; navai_jax reads TFDS datasets stored '
                    'as array_record or tfrecord.')
  rows, parts, offset = [], [], 0
  for part in split.split('+'):
    part = part.strip()
    source = (builder.as_data_source(split=part) if file_format == 'array_record'
              else TfRecordSource(builder.info, part))
    safe = re.sub(r'[^\w.-]', '_', part)
    index_path = None if index_dir is None else index_dir / f'index-{safe}.npz'
    for row in index_rows(source, index_path, f'{where} split {part!r}'):
      rows.append(row[:5] + (row[5] + offset,))
    parts.append(TfdsRecords(source, f'{where} split {part!r}'))
    offset += len(source)
  return rows, Concatenated(parts) if len(parts) > 1 else parts[0]
