"""Speech corpora as random-access sources: an index in memory, the audio read when asked for.

Sources (`config.data.source`):

* ``folder:PATH``: any folder in LibriSpeech layout (`librispeech`): our synthesized corpus (split
  folders `train`, `dev`, `test`) or a LibriSpeech copy (point PATH at its `LibriSpeech`
  folder, with any of its seven split folders; 'train', 'dev', 'test' fall back to
  `train-clean-100`, `dev-clean`, `test-clean` when there is no folder of the short name).
* ``tfds:librispeech`` (or any TFDS audio dataset with LibriSpeech's features), already
  prepared under `config.data.tfds_data_dir`; nothing is downloaded. Short split names map to
  LibriSpeech's: 'train' -> 'train_clean100+train_clean360', 'dev' -> 'dev_clean', 'test' ->
  'test_clean'; other split strings go to TFDS unchanged.

Readers (`config.data.reader`):

* 'tfds' (the default): a `folder:` source is prepared once by the `tfds_folder` builder into
  ArrayRecord files (`config.data.tfds_data_dir`, or `PATH/_tfds`), each split folder in
  shards of `config.data.shard_speakers` speaker folders with a builder each, so that an
  interrupted preparation keeps the shards it finished, and a shard is prepared again when
  its files change; a slice ('train[:10%]') of a folder split is taken over its utterances
  in the order of a hash of their ids, whatever the sharding; a `tfds:` dataset is read from
  its own files. ArrayRecord files are read at
  random through TFDS's data source (`builder.as_data_source`); a `tfds:` dataset prepared in
  TFRecord format (TFDS's default, so most prepared LibriSpeech copies) is read at random too,
  from the record offsets of one scan of its files (`tfds_records.TfRecordSource`).
* 'direct': a `folder:` source's FLAC files are read one by one as they are asked for, with
  the same checks (`librispeech`) and without preparing anything or importing TensorFlow.

Memory. A `Split` holds an index only: per utterance its id, speaker, chapter, length, labels
(one byte per token) and where its audio is; about 100 bytes per utterance (LibriSpeech's
281,241 training utterances take ~30 MB), not the ~115 MB per hour that the audio would take.
The index of a TFDS split is built by one pass over its records and cached beside them
(`index-SPLIT.npz`); a folder's index reads the transcripts and every FLAC header.
"""

import dataclasses
import difflib
import hashlib
import os
from pathlib import Path
import re
import types
from collections.abc import Callable
from typing import Any, Optional

from absl import logging
import ml_collections
import numpy as np

from navai_jax.recognizer import features
from navai_jax.speech import librispeech
from navai_jax.speech import tfds_records
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

DataError = librispeech.DataError
READERS = ('tfds', 'direct')

# Short split names of the standard TFDS LibriSpeech and of a LibriSpeech folder.
TFDS_LIBRISPEECH_SPLITS = {'train': 'train_clean100+train_clean360', 'dev': 'dev_clean',
                           'test': 'test_clean'}
FOLDER_LIBRISPEECH_SPLITS = {'train': 'train-clean-100', 'dev': 'dev-clean', 'test': 'test-clean'}
# The split folders of LibriSpeech itself.
LIBRISPEECH_SPLITS = ('dev-clean', 'dev-other', 'test-clean', 'test-other', 'train-clean-100',
                      'train-clean-360', 'train-other-500')


@dataclasses.dataclass(frozen=True)
class Utterance:
  id: str
  text: str  # Normalized by `vocab.normalize` (lower case, single spaces).
  speaker_id: int
  chapter_id: int
  audio: np.ndarray  # float32 [A] in [-1, 1].


class FlacFiles:
  """Random access to FLAC files: item i is the int16 audio of `paths[i]` (`librispeech.read_flac`)."""

  def __init__(self, paths: list[str]):
    self._paths = np.array(paths, dtype=object)

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, i: int) -> np.ndarray:
    return librispeech.read_flac(Path(self._paths[i]))


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """The index of a split, sorted by id, and random access to its audio.

  Utterance u has `lengths[u]` samples, read by `read(u)` from `records[records_of[u]]`, and
  labels `labels[label_offsets[u]:label_offsets[u + 1]]` (`vocab.encode` of its text).
  """
  ids: np.ndarray  # str [U]
  speaker_ids: np.ndarray  # int64 [U]
  chapter_ids: np.ndarray  # int64 [U]
  lengths: np.ndarray  # int64 [U]
  label_offsets: np.ndarray  # int64 [U + 1]
  labels: np.ndarray  # int8 [sum of label lengths]
  records_of: np.ndarray  # int64 [U]
  records: Any  # random access: records[i] -> int16 samples
  name: str = ''  # "source split", for messages

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def label_lengths(self) -> np.ndarray:
    return np.diff(self.label_offsets)

  @property
  def hours(self) -> float:
    return float(self.lengths.sum()) / librispeech.SAMPLE_RATE / 3600

  def label_ids(self, u: int) -> np.ndarray:
    return self.labels[self.label_offsets[u]:self.label_offsets[u + 1]].astype(np.int32)

  def text(self, u: int) -> str:
    """The normalized transcript of utterance `u`."""
    return vocab.decode(self.label_ids(u))

  @property
  def texts(self) -> np.ndarray:
    """Every transcript (made from the labels when asked for)."""
    return np.array([self.text(u) for u in range(len(self))])

  def read(self, u: int) -> np.ndarray:
    """The int16 samples of utterance `u`, read from the source now."""
    samples = self.records[int(self.records_of[u])]
    if len(samples) != self.lengths[u]:
      raise DataError(f'Utterance {self.ids[u]} of {self.name} changed since it was indexed '
                      f'({len(samples)} samples, the index says {self.lengths[u]}).')
    return samples

  def audio(self, u: int) -> np.ndarray:
    """Float32 audio in [-1, 1] of utterance number `u`."""
    return self.read(u).astype(np.float32) / 32768.0

  def utterance(self, u: int) -> Utterance:
    return Utterance(str(self.ids[u]), self.text(u), int(self.speaker_ids[u]),
                     int(self.chapter_ids[u]), self.audio(u))

  def index(self, utt_id: str) -> int:
    """Position of utterance `utt_id`; ValueError if the split has none."""
    u = int(np.searchsorted(self.ids, utt_id))
    if u == len(self.ids) or self.ids[u] != utt_id:
      raise ValueError(f'No utterance {utt_id!r} in this split ({len(self)} utterances).')
    return u


_SPLITS: dict[tuple[str, ...], Split] = {}


def folder_split_parts(root: Path, split: str) -> list[tuple[str, str]]:
  """(split folder name, TFDS slice or '') of each '+'-joined part of a folder split string.

  'dev' names the folder `dev`, or `dev-clean` in a LibriSpeech copy that has no `dev`.
  """
  parts = []
  for part in split.split('+'):
    match = re.fullmatch(r'\s*([\w-]+)\s*(\[[^\]]*\])?\s*', part)
    if not match:
      raise ValueError(f'Cannot read split {split!r}: write NAME, NAME[SLICE] or NAME+NAME.')
    name, slice_ = match.group(1), match.group(2) or ''
    if not (root / name).is_dir() and (root / FOLDER_LIBRISPEECH_SPLITS.get(name, name)).is_dir():
      name = FOLDER_LIBRISPEECH_SPLITS[name]
    if not (root / name).is_dir():
      have = ', '.join(d.name for d in librispeech.split_folders(root))
      raise DataError(f'No split folder {name!r} in {root}; split folders there: {have}.')
    parts.append((name, slice_))
  return parts


# An index row: (id, text as written, speaker, chapter, samples, record).
Row = tfds_records.Row


def _flac_rows(root: Path, names: list[str]) -> tuple[list[Row], FlacFiles]:
  """Index rows of split folders from their transcripts and FLAC headers."""
  rows, paths = [], []
  for name in names:
    for audio, (utt_id, text, _) in librispeech.read_transcripts(root / name).items():
      speaker, chapter, _ = utt_id.split('-')
      rows.append((utt_id, text, int(speaker), int(chapter), librispeech.flac_length(audio),
                   len(paths)))
      paths.append(str(audio))
  return rows, FlacFiles(paths)


def _sliced(rows: list[Row], split: str, slice_: str, where: str) -> list[Row]:
  """The rows a TFDS slice ('[:10%]', '[100:200]', ...) of a sharded split folder takes.

  The slice is read as TFDS reads it, over the rows in the order of a hash of their ids (an
  order that mixes speakers and does not depend on how the folder was sharded), so that a
  percentage takes utterances of every speaker, as TFDS's own shuffled order does.
  """
  if not slice_:
    return rows
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    spans = tfds.core.ReadInstruction.from_spec(split + slice_).to_absolute(
        {split: types.SimpleNamespace(num_examples=len(rows))})
  except (AssertionError, ValueError) as e:
    raise DataError(f'Cannot read the slice {slice_!r} of {where} ({len(rows)} utterances): '
                    f'{e}') from None
  ordered = sorted(rows, key=lambda r: hashlib.sha1(r[0].encode()).digest())
  return [row for span in spans for row in ordered[span.from_:span.to]]


def _joined(splits: list[tuple[list[Row], Any]]) -> tuple[list[Row], Any]:
  """The index rows and records of several splits, one after another."""
  if len(splits) == 1:
    return splits[0]
  rows, offset = [], 0
  for part_rows, records in splits:
    rows += [row[:5] + (row[5] + offset,) for row in part_rows]
    offset += len(records)
  return rows, tfds_records.Concatenated([records for _, records in splits])


def _locate(config: ml_collections.ConfigDict, split: str
            ) -> tuple[tuple[str, ...], Callable[[], tuple[list[Row], Any]]]:
  """A key naming a split's content, and a function returning its index rows and records.

  Raises:
    ValueError: an unknown source or reader, or a split string the reader cannot read.
  """
  source = config.data.source
  reader = config.data.get('reader', 'tfds')
  if reader not in READERS:
    raise ValueError(f'Unknown data.reader {reader!r}; choose one of {", ".join(READERS)}.')
  kind, _, arg = source.partition(':')
  if kind == 'folder' and arg:
    root = Path(arg).expanduser().resolve()
    parts = folder_split_parts(root, split)
    if reader == 'direct':
      if any(slice_ for _, slice_ in parts):
        raise ValueError(f"data.reader='direct' reads whole split folders; split {split!r} "
                         "has a slice, which needs data.reader='tfds'.")
      names = [name for name, _ in parts]
      return ((str(root), librispeech.folder_fingerprint(root), 'direct', *names),
              lambda: _flac_rows(root, names))
    from navai_jax.speech import tfds_folder  # pylint: disable=g-import-not-at-top
    # One builder per shard of speakers of each split folder: an interrupted preparation keeps
    # the shards it finished.
    per_shard = int(config.data.shard_speakers)
    prepared = [[tfds_folder.prepared_folder_builder(root, config.data.tfds_data_dir, name,
                                                     entries)
                 for entries in tfds_folder.shards(root / name, per_shard)]
                for name, _ in parts]
    key = tuple((b.data_dir, (Path(b.data_dir) / 'folder_fingerprint.txt').read_text(),
                 name + slice_) for (name, slice_), builders in zip(parts, prepared)
                for b in builders)

    def load():
      joined = []
      for (name, slice_), builders in zip(parts, prepared):
        split_name = librispeech.tfds_split_name(name)
        rows, records = _joined([tfds_records.split_records(b, split_name, Path(b.data_dir),
                                                            str(root)) for b in builders])
        joined.append((_sliced(rows, split_name, slice_, f'{root / name}'), records))
      return _joined(joined)
    return key, load
  if kind == 'tfds' and arg:
    if reader != 'tfds':
      raise ValueError(f"data.reader={reader!r} reads 'folder:' sources only; "
                       f"{source!r} needs data.reader='tfds'.")
    if arg.split('/')[0] == 'librispeech':
      split = TFDS_LIBRISPEECH_SPLITS.get(split, split)
    data_dir = config.data.tfds_data_dir or None

    def load():
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      try:
        builder = tfds.builder(arg, data_dir=data_dir)
        if not builder.is_prepared():
          raise DataError(f'TFDS dataset {arg!r} is not prepared in {builder.data_dir} (run '
                          f'`tfds build {arg}` there first).')
        return tfds_records.split_records(builder, split, _writable(Path(builder.data_dir)), source)
      except tfds.core.registered.DatasetNotFoundError:
        # TFDS's own message lists every dataset it knows (hundreds of lines): one line here.
        name = arg.split('/')[0].split(':')[0]
        close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False),
                                          n=3)
        hint = f'; did you mean {" or ".join(close)}?' if close else ''
        raise DataError(f'No TFDS dataset {name!r}{hint}') from None
      except (KeyError, ValueError) as e:
        if isinstance(e, DataError):
          raise
        have = ', '.join(sorted(builder.info.splits))
        raise DataError(f'TFDS dataset {arg!r} has no split {split!r} ({e}); its splits: '
                        f'{have}.') from None
    return (source, str(data_dir), split), load
  raise ValueError(f"Unknown data source {source!r}; use 'folder:PATH' or 'tfds:NAME'.")


def _writable(folder: Path) -> Optional[Path]:
  """`folder` if the index cache can be written there, else None (index rebuilt each time)."""
  return folder if folder.is_dir() and os.access(folder, os.W_OK) else None


def _check_transcripts_fit(config: ml_collections.ConfigDict, split: str, rows: list[Row],
                           encoded: list[np.ndarray]) -> None:
  """DataError naming the utterances whose transcript needs more CTC output positions than
  their audio gives: one per token, plus a blank between two equal tokens."""
  c, specs = config.features, model.layer_specs(config.model)
  misfits = []
  for (utt_id, _, _, _, samples, _), labels in zip(rows, encoded):
    needed = vocab.ctc_length(labels)
    frames = int(features.num_frames(samples, c.window, c.hop))
    positions = int(model.output_length(specs, frames))
    if needed > positions:
      misfits.append(f'{utt_id} needs {needed} output positions ({len(labels)} tokens), its '
                     f'{samples / c.sample_rate:.2f} s give {positions}')
  if misfits:
    shown = '; '.join(misfits[:5]) + ('; ...' if len(misfits) > 5 else '')
    raise DataError(f'{len(misfits)} utterance(s) of {config.data.source} split {split!r} have '
                    f'transcripts longer than CTC can align to their audio: {shown}. Fix or '
                    'remove them.')


def load_split(config: ml_collections.ConfigDict, split: str) -> Split:
  """The index of `split`, sorted by id (built once per process); audio is read on demand.

  Raises:
    DataError: an utterance whose transcript is empty or outside the vocabulary or does not
      fit its audio, a file that cannot be read, a split or source that is not there.
  """
  key, load = _locate(config, split)
  if key in _SPLITS:
    return _SPLITS[key]
  rows, records = load()
  normalized = []
  for utt_id, text, *rest in rows:
    try:
      normalized.append((utt_id, vocab.normalize(text), *rest))
    except vocab.UnspellableError as e:
      raise DataError(f'Utterance {utt_id} of {config.data.source} split {split!r}: {e}.') from None
  if not normalized:
    raise DataError(f'Split {split!r} of {config.data.source} holds no utterances.')
  normalized.sort(key=lambda r: r[0])
  encoded = [np.asarray(vocab.encode(r[1]), np.int8) for r in normalized]
  _check_transcripts_fit(config, split, normalized, encoded)
  data = Split(
      ids=np.array([r[0] for r in normalized]),
      speaker_ids=np.array([r[2] for r in normalized], np.int64),
      chapter_ids=np.array([r[3] for r in normalized], np.int64),
      lengths=np.array([r[4] for r in normalized], np.int64),
      label_offsets=np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64),
      labels=np.concatenate(encoded),
      records_of=np.array([r[5] for r in normalized], np.int64),
      records=records, name=f'{config.data.source} split {split!r}')
  logging.info('Indexed %d utterances (%.2f h) of %s split %r.', len(data), data.hours,
               config.data.source, split)
  _SPLITS[key] = data
  return data


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of utterances in `split`."""
  return len(load_split(config, split))


def utterance_by_id(config: ml_collections.ConfigDict, split: str, utt_id: str) -> Utterance:
  """One utterance (id, normalized text, float audio) of `split`."""
  data = load_split(config, split)
  return data.utterance(data.index(utt_id))
