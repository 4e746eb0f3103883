"""Speech data through tensorflow-datasets, and length-bucketed batches for JAX.

Sources (`config.data.source`):

* ``tfds:librispeech``: the standard TFDS dataset, already prepared under
  `config.data.tfds_data_dir` (nothing is downloaded here). Short split names map to
  LibriSpeech's: 'train' -> 'train_clean100+train_clean360', 'dev' -> 'dev_clean',
  'test' -> 'test_clean'; any other split string (e.g. 'train_other500', 'dev_clean[:10%]')
  goes to TFDS unchanged.
* ``folder:PATH``: any folder in LibriSpeech layout (`layout`): our synthesized corpus (split
  folders `train`, `dev`, `test`) or a LibriSpeech copy (point PATH at its `LibriSpeech`
  folder; 'train', 'dev', 'test' fall back to `train-clean-100`, `dev-clean`, `test-clean`
  when there is no folder of the short name). The `LibrispeechFolder` builder turns every split
  folder into a TFDS split with the standard dataset's features, prepared into
  `config.data.tfds_data_dir`, or `PATH/_tfds` when that is ''. Its builder config is named by
  a hash of the absolute path, so folders coexist in one data dir, and it is rebuilt when the
  folder's files (names and sizes, transcript contents) change. Building is as strict as
  `layout.folder_examples`. The builder lives in `tfds_folder`, imported only when a split is
  loaded, so that this module imports without TensorFlow.

Readers (`config.data.reader`). 'tfds' (the default) loads every source through TFDS as above.
'direct' loads a `folder:` source's split folders with the builder's own example generator
(`layout.folder_examples`), checked the same way, without preparing TFDS files: for machines
without TensorFlow, such as a GPU image that carries JAX alone. Both give the same `Split`.

Batches. A split is loaded into memory once per process (int16, ~115 MB per hour of audio)
and kept there; every batch is then a few numpy copies. Keeping audio in memory, rather than
streaming through tf.data, is what makes the training order a pure function of (seed, step):
each epoch's list of batches is planned from utterance lengths alone with a numpy generator
seeded by (seed, epoch), so a run resumed at step k sees exactly the batches of an uninterrupted run.
For corpora much larger than memory (all 960 h of LibriSpeech is ~110 GB as int16) this
design needs a random-access store instead; train-clean-100 (~11 GB) still fits.

Utterances are grouped into `config.data.num_buckets` length buckets with equally many
utterances each; a bucket's batches are padded to the bucket's upper length (rounded up to
128 ms), hold about `config.data.batch_seconds` of padded audio, and have a fixed label
width, so a jitted step compiles once per bucket.
"""

import dataclasses
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from navai_jax import features
from navai_jax import layout
from navai_jax import model
from navai_jax import validation
from navai_jax import vocab

DataError = layout.DataError
# Bucket lengths are rounded up to a multiple of this many samples (128 ms, 16 hops).
LENGTH_QUANTUM = 2048

# Short split names of the standard TFDS LibriSpeech and of a LibriSpeech folder.
TFDS_LIBRISPEECH_SPLITS = {'train': 'train_clean100+train_clean360', 'dev': 'dev_clean',
                           'test': 'test_clean'}
FOLDER_LIBRISPEECH_SPLITS = {'train': 'train-clean-100', 'dev': 'dev-clean', 'test': 'test-clean'}


# ---------------------------------------------------------------------------------------------
# Splits in memory.


@dataclasses.dataclass(frozen=True)
class Utterance:
  id: str
  text: str  # Normalized by `vocab.normalize` (lower case, single spaces).
  speaker_id: int
  chapter_id: int
  audio: np.ndarray  # float32 [N] in [-1, 1].


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """All utterances of a split, sorted by id; audio concatenated into one int16 array.

  Utterance u has samples `samples[offsets[u]:offsets[u + 1]]` and labels
  `labels[label_offsets[u]:label_offsets[u + 1]]` (`vocab.encode` of its text).
  """
  ids: np.ndarray  # str [U]
  texts: np.ndarray  # str [U]
  speaker_ids: np.ndarray  # int64 [U]
  chapter_ids: np.ndarray  # int64 [U]
  offsets: np.ndarray  # int64 [U + 1]
  samples: np.ndarray  # int16 [sum of lengths]
  label_offsets: np.ndarray  # int64 [U + 1]
  labels: np.ndarray  # int32 [sum of label lengths]

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def lengths(self) -> np.ndarray:
    """Samples per utterance, int64 [U]."""
    return np.diff(self.offsets)

  @property
  def label_lengths(self) -> np.ndarray:
    return np.diff(self.label_offsets)

  def audio(self, u: int) -> np.ndarray:
    """Float32 audio in [-1, 1] of utterance number `u`."""
    return self.samples[self.offsets[u]:self.offsets[u + 1]].astype(np.float32) / 32768.0

  def utterance(self, u: int) -> Utterance:
    return Utterance(str(self.ids[u]), str(self.texts[u]), int(self.speaker_ids[u]),
                     int(self.chapter_ids[u]), self.audio(u))

  def index(self, utt_id: str) -> int:
    """Position of utterance `utt_id`; ValueError if the split has none."""
    u = int(np.searchsorted(self.ids, utt_id))
    if u == len(self.ids) or self.ids[u] != utt_id:
      raise ValueError(f'No utterance {utt_id!r} in this split ({len(self)} utterances).')
    return u


_SPLITS: dict[tuple[str, ...], Split] = {}


READERS = validation.READERS


def _folder_split_parts(root: Path, split: str) -> list[tuple[str, str]]:
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
      have = ', '.join(d.name for d in layout.split_folders(root))
      raise DataError(f'No split folder {name!r} in {root}; split folders there: {have}.')
    parts.append((name, slice_))
  return parts


def _numpy_examples(dataset) -> Iterator[dict[str, Any]]:
  """Examples of a TFDS dataset with 'id' and 'text' as str."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  for ex in tfds.as_numpy(dataset):
    yield dict(ex, id=ex['id'].decode(), text=ex['text'].decode())


def _locate(config: ml_collections.ConfigDict, split: str
            ) -> tuple[tuple[str, ...], Callable[[], Iterator[dict[str, Any]]]]:
  """A key naming a split's content, and a function yielding its examples (numpy, str text).

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
    parts = _folder_split_parts(root, split)
    if reader == 'direct':
      if any(slice_ for _, slice_ in parts):
        raise ValueError(f"data.reader='direct' reads whole split folders; split {split!r} "
                         "has a slice, which needs data.reader='tfds'.")
      names = [name for name, _ in parts]
      return ((str(root), layout.folder_fingerprint(root), 'direct', *names),
              lambda: itertools.chain.from_iterable(layout.folder_examples(root / n)
                                                    for n in names))
    from navai_jax import tfds_folder  # pylint: disable=g-import-not-at-top
    builder = tfds_folder.prepared_folder_builder(root, config.data.tfds_data_dir)
    tfds_split = '+'.join(layout.tfds_split_name(name) + slice_ for name, slice_ in parts)
    fingerprint = (Path(builder.data_dir) / 'folder_fingerprint.txt').read_text()
    return ((builder.data_dir, fingerprint, tfds_split),
            lambda: _numpy_examples(builder.as_dataset(split=tfds_split, shuffle_files=False)))
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
        dataset = tfds.load(arg, split=split, data_dir=data_dir, download=False,
                            shuffle_files=False)
      except AssertionError as e:  # TFDS's way of saying "not prepared".
        raise DataError(f'TFDS dataset {arg!r} is not prepared in '
                        f'{data_dir or "the default TFDS dir"} (run `tfds build {arg}` '
                        f'there first): {e}') from None
      return _numpy_examples(dataset)
    return (source, str(data_dir), split), load
  raise ValueError(f"Unknown data source {source!r}; use 'folder:PATH' or 'tfds:NAME'.")


def _check_transcripts_fit(config: ml_collections.ConfigDict, split: str, rows: list,
                           encoded: list[np.ndarray]) -> None:
  """DataError naming the utterances whose transcript needs more CTC output positions than
  their audio gives: one per token, plus a blank between two equal tokens."""
  c, specs = config.features, model.layer_specs(config.model)
  misfits = []
  for (utt_id, _, _, _, speech), labels in zip(rows, encoded):
    needed = vocab.ctc_length(labels)
    frames = int(features.num_frames(len(speech), c.window, c.hop))
    positions = int(model.output_length(specs, frames))
    if needed > positions:
      misfits.append(f'{utt_id} needs {needed} output positions ({len(labels)} tokens), its '
                     f'{len(speech) / c.sample_rate:.2f} s give {positions}')
  if misfits:
    shown = '; '.join(misfits[:5]) + ('; ...' if len(misfits) > 5 else '')
    raise DataError(f'{len(misfits)} utterance(s) of {config.data.source} split {split!r} have '
                    f'transcripts longer than CTC can align to their audio: {shown}. Fix or '
                    'remove them.')


def load_split(config: ml_collections.ConfigDict, split: str) -> Split:
  """All utterances of `split` in memory, sorted by id (loaded once per process).

  Raises:
    DataError: an utterance whose transcript is empty or outside the vocabulary, or a source
      that is not there.
  """
  key, load = _locate(config, split)
  if key in _SPLITS:
    return _SPLITS[key]
  rows = []
  for ex in load():
    utt_id, text = ex['id'], ex['text']
    try:
      text = vocab.normalize(text)
    except vocab.UnspellableError as e:
      raise DataError(f'Utterance {utt_id} of {config.data.source} split {split!r}: {e}.') from None
    speech = ex['speech']
    if speech.dtype != np.int16:
      if speech.size and (speech.min() < -32768 or speech.max() > 32767):
        raise DataError(f'Utterance {utt_id}: samples outside the 16-bit range.')
      speech = speech.astype(np.int16)
    rows.append((utt_id, text, int(ex['speaker_id']), int(ex['chapter_id']), speech))
  if not rows:
    raise DataError(f'Split {split!r} of {config.data.source} holds no utterances.')
  rows.sort(key=lambda r: r[0])
  encoded = [np.asarray(vocab.encode(r[1]), np.int32) for r in rows]
  _check_transcripts_fit(config, split, rows, encoded)
  data = Split(
      ids=np.array([r[0] for r in rows]), texts=np.array([r[1] for r in rows]),
      speaker_ids=np.array([r[2] for r in rows], np.int64),
      chapter_ids=np.array([r[3] for r in rows], np.int64),
      offsets=np.cumsum([0] + [len(r[4]) for r in rows]).astype(np.int64),
      samples=np.concatenate([r[4] for r in rows]),
      label_offsets=np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64),
      labels=np.concatenate(encoded))
  logging.info('Loaded %d utterances (%.2f h) of %s split %r.', len(data),
               len(data.samples) / layout.SAMPLE_RATE / 3600, config.data.source, split)
  _SPLITS[key] = data
  return data


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of utterances in `split`."""
  return len(load_split(config, split))


def utterance_by_id(config: ml_collections.ConfigDict, split: str, utt_id: str) -> Utterance:
  """One utterance (id, normalized text, float audio) of `split`."""
  data = load_split(config, split)
  return data.utterance(data.index(utt_id))


# ---------------------------------------------------------------------------------------------
# Batches.


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Length buckets of a list of utterances.

  Bucket k holds utterances with bounds[k - 1] < length <= bounds[k] samples; its batches
  have shape [batch_sizes[k], bounds[k]] for audio and [batch_sizes[k], label_widths[k]]
  for labels.
  """
  bounds: np.ndarray  # int64 [K]
  batch_sizes: np.ndarray  # int64 [K]
  label_widths: np.ndarray  # int64 [K]
  bucket_of: np.ndarray  # int64 [U]


def make_buckets(lengths_U: np.ndarray, label_lengths_U: np.ndarray, *, num_buckets: int,
                 batch_seconds: float, batch_multiple: int) -> Buckets:
  """Buckets with about equally many utterances, batches of ~`batch_seconds` padded audio.

  A bucket's batch size is a multiple of `batch_multiple`, at least `batch_multiple`, and no
  larger than needed for the bucket's utterances.
  """
  quantiles = np.quantile(lengths_U, np.arange(1, num_buckets + 1) / num_buckets,
                          method='higher')
  bounds = np.unique(-(-quantiles // LENGTH_QUANTUM) * LENGTH_QUANTUM).astype(np.int64)
  bucket_of = np.searchsorted(bounds, lengths_U, side='left')
  counts = np.bincount(bucket_of, minlength=len(bounds))
  m = batch_multiple
  sizes = np.maximum(m, (batch_seconds * layout.SAMPLE_RATE // bounds).astype(np.int64) // m * m)
  sizes = np.minimum(sizes, -(-counts // m) * m)
  widths = np.ones(len(bounds), np.int64)
  np.maximum.at(widths, bucket_of, label_lengths_U)
  keep = counts > 0
  remap = np.cumsum(keep) - 1
  return Buckets(bounds[keep], sizes[keep], widths[keep], remap[bucket_of])


def _assemble(data: Split, rows: np.ndarray, size: int, num_samples: int,
              label_width: int) -> dict[str, np.ndarray]:
  """One padded batch of utterances `rows`; filler rows repeat rows[0] with weight 0."""
  filled = np.concatenate([rows, np.full(size - len(rows), rows[0])])
  audio = np.zeros((size, num_samples), np.float32)
  labels = np.zeros((size, label_width), np.int32)
  paddings = np.ones((size, label_width), np.float32)
  for r, u in enumerate(filled):
    a, b = data.offsets[u], data.offsets[u + 1]
    audio[r, :b - a] = data.samples[a:b]
    la, lb = data.label_offsets[u], data.label_offsets[u + 1]
    labels[r, :lb - la] = data.labels[la:lb]
    paddings[r, :lb - la] = 0.0
  audio *= 1.0 / 32768.0
  real = np.arange(size) < len(rows)
  return {
      'audio': audio,
      'audio_lengths': data.lengths[filled].astype(np.int32),
      'labels': labels,
      'label_paddings': paddings,
      'id': np.where(real, data.ids[filled], ''),
      'text': np.where(real, data.texts[filled], ''),
      'weights': real.astype(np.float32),
  }


def epoch_plan(buckets: Buckets, seed: int, epoch: int) -> list[np.ndarray]:
  """Batches (positions into the bucketed utterances) of one training epoch, in order.

  A pure function of (seed, epoch): a numpy generator seeded by both shuffles the
  utterances, cuts each bucket into batches and shuffles the batches.
  """
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(buckets.bucket_of))
  plan = []
  for k, size in enumerate(buckets.batch_sizes):
    members = order[buckets.bucket_of[order] == k]
    plan += [members[i:i + size] for i in range(0, len(members), size)]
  return [plan[j] for j in rng.permutation(len(plan))]


def batches(config: ml_collections.ConfigDict, split: str, *, train: bool, seed: int = 0,
            start_step: int = 0, batch_multiple: int = 1,
            max_utterances: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Padded, length-bucketed numpy batches of a split.

  Args:
    config: the experiment config (uses `config.data`).
    split: split name, e.g. 'train', 'dev' (see the module docstring).
    train: True: endless, reshuffled every epoch, utterances longer than
      `config.data.max_seconds` dropped, batch i a pure function of (seed, i). False: one pass
      over every utterance exactly once, bucket by bucket, id order inside a bucket.
    seed: non-negative seed of the training order.
    start_step: training only; the first batch is the one a run from step 0 gets at this step.
    batch_multiple: every batch size is a multiple of this (the number of data-parallel devices).
    max_utterances: > 0: use only this many utterances, evenly spaced over the id-sorted split
      (so every speaker is represented).
  Yields:
    dicts with 'audio' float32 [B, N] in [-1, 1] zero-padded, 'audio_lengths' int32 [B],
    'labels' int32 [B, L] padded with 0, 'label_paddings' float32 [B, L] (1.0 where padded),
    'id' and 'text' str [B], 'weights' float32 [B]. Filler rows (weight 0, id and text '')
    repeat the batch's first utterance, so every row gives finite features and losses.
  """
  if batch_multiple < 1:
    raise ValueError(f'batch_multiple must be >= 1, got {batch_multiple}.')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}.')
  if start_step < 0 or (start_step and not train):
    raise ValueError(f'start_step must be >= 0 and is for training only, got {start_step}.')
  data = load_split(config, split)
  use = np.arange(len(data))
  if 0 < max_utterances < len(data):
    use = np.unique(np.linspace(0, len(data) - 1, max_utterances).round().astype(np.int64))
  if train:
    limit = config.data.max_seconds * layout.SAMPLE_RATE
    too_long = data.lengths[use] > limit
    if too_long.any():
      logging.warning('Training on %s: dropped %d of %d utterances longer than %.1f s.', split,
                      too_long.sum(), len(use), config.data.max_seconds)
      use = use[~too_long]
    if not len(use):
      raise DataError(f'No utterance of split {split!r} is at most '
                      f'{config.data.max_seconds} s long (config.data.max_seconds).')
  buckets = make_buckets(data.lengths[use], data.label_lengths[use],
                         num_buckets=config.data.num_buckets,
                         batch_seconds=config.data.batch_seconds, batch_multiple=batch_multiple)

  def batch(positions: np.ndarray) -> dict[str, np.ndarray]:
    k = buckets.bucket_of[positions[0]]
    return _assemble(data, use[positions], int(buckets.batch_sizes[k]), int(buckets.bounds[k]),
                     int(buckets.label_widths[k]))

  if not train:
    for k, size in enumerate(buckets.batch_sizes):
      members = np.flatnonzero(buckets.bucket_of == k)
      for i in range(0, len(members), size):
        yield batch(members[i:i + size])
    return
  steps_per_epoch = len(epoch_plan(buckets, seed, 0))
  epoch, skip = divmod(start_step, steps_per_epoch)
  while True:
    for positions in epoch_plan(buckets, seed, epoch)[skip:]:
      yield batch(positions)
    epoch, skip = epoch + 1, 0
