"""Length-bucketed batches of a split, read from disk as they are needed (grain).

A split is an index (`sources.load_split`): ids, lengths, labels and where each utterance's
audio lies. Batches are planned from the index alone and their audio is read when the batch
is made, by a grain `MapDataset` over batch numbers whose `to_iter_dataset` reads
`config.data.read_threads` batches at once, ahead of the consumer and in order. So memory
holds the index and a few batches, whatever the corpus's size.

Order. Each epoch's list of batches is planned from utterance lengths with a numpy generator
seeded by (seed, epoch), so batch i of training is a pure function of (seed, i): a run resumed
at step k reads exactly the batches of an uninterrupted run, and grain's reading ahead does not
change that order.

Utterances are grouped into `config.data.num_buckets` length buckets with equally many
utterances each; a bucket's batches are padded to the bucket's upper length (rounded up to
128 ms), hold about `config.data.batch_seconds` of padded audio, and have a fixed label
width, so a jitted step compiles once per bucket.

Several hosts. With `process_count > 1` each process reads and yields only its own block of
every batch's rows (`process_index`), the part its devices take; `parallel.shard_batch`
assembles the global arrays from the blocks.
"""

import dataclasses
import threading
from collections.abc import Iterator

from absl import logging
import grain
import ml_collections
import numpy as np

from navai_jax.core import rules
from navai_jax.recognizer import features
from navai_jax.speech import librispeech
from navai_jax.speech import other_languages
from navai_jax.speech import phoneme_times
from navai_jax.speech import sources
from navai_jax.speech import voices

DataError = librispeech.DataError
Split = sources.Split
Utterance = sources.Utterance
READERS = sources.READERS
load_split = sources.load_split
num_examples = sources.num_examples
utterance_by_id = sources.utterance_by_id

# Bucket lengths are rounded up to a multiple of this many samples (128 ms, 16 hops).
LENGTH_QUANTUM = 2048
# Training steps yielded by one endless `batches(train=True)` iterator at most (about 10^12).
_ENDLESS = 2**40


def _source_ok(source) -> bool:
  kind, _, arg = str(source).partition(':')
  return kind in ('folder', 'tfds') and bool(arg.strip())


RULES = {'data': [
    ('source', _source_ok, "'folder:PATH' or 'tfds:NAME'"),
    ('train_split', bool, 'a split name'), ('eval_split', bool, 'a split name'),
    ('reader', *rules.one_of(sources.READERS)),
    ('batch_seconds', *rules.POSITIVE), ('max_seconds', *rules.POSITIVE),
    ('num_buckets', *rules.at_least(1)), ('read_threads', *rules.at_least(0)),
    ('shard_speakers', *rules.at_least(1)),
    ('train_engines', lambda v: all(e in voices.ENGINES for e in v),
     f'() or engines among {", ".join(voices.ENGINES)}'),
    ('sorted_epochs', *rules.at_least(0)),
]}


def engine_rows(config: ml_collections.ConfigDict, data: Split, use: np.ndarray
                ) -> np.ndarray:
  """The rows of `use` whose speaker is voiced by one of `config.data.train_engines` (all of
  `use` for ()), as the corpus folder's SPEAKERS.txt names each speaker's engine.

  Raises:
    DataError: the source names no engines (TFDS, real LibriSpeech, a corpus made before
      engines), or none of the split's speakers is voiced by those engines.
  """
  wanted = tuple(config.data.get('train_engines', ()))
  if not wanted:
    return use
  kind, _, folder = str(config.data.source).partition(':')
  engines = voices.engines_of_speakers(folder) if kind == 'folder' else {}
  if not engines:
    raise DataError(f'config.data.train_engines={wanted} needs a corpus folder whose '
                    f'SPEAKERS.txt names each speaker\'s engine; {config.data.source} has none.')
  keep = np.array([engines.get(str(s)) in wanted for s in data.speaker_ids[use]], bool)
  if not keep.any():
    raise DataError(f'No speaker of {data.name} is voiced by {", ".join(wanted)} '
                    '(config.data.train_engines).')
  return use[keep]


# The engines a row's 'engine' numbers from 1 (0: no engine named); `train.engine_adversary`
# reads it. A fixed tuple, so the adversary's shape is the same for every corpus.
ENGINE_IDS = tuple(voices.ENGINES)


def engine_ids(config: ml_collections.ConfigDict, data: Split) -> np.ndarray:
  """int32 [U], one per utterance of `data`: 1 + the position in ENGINE_IDS of the engine that
  voices its speaker, as the corpus folder's SPEAKERS.txt names it; 0 where none is named
  (TFDS, real LibriSpeech, the split of other languages)."""
  kind, _, folder = str(config.data.source).partition(':')
  engines = voices.engines_of_speakers(folder) if kind == 'folder' else {}
  number = {engine: k + 1 for k, engine in enumerate(ENGINE_IDS)}
  return np.array([number.get(engines.get(str(s)), 0) for s in data.speaker_ids], np.int32)


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
  sizes = np.maximum(m, (batch_seconds * librispeech.SAMPLE_RATE // bounds).astype(np.int64) // m * m)
  sizes = np.minimum(sizes, -(-counts // m) * m)
  widths = np.ones(len(bounds), np.int64)
  np.maximum.at(widths, bucket_of, label_lengths_U)
  keep = counts > 0
  remap = np.cumsum(keep) - 1
  return Buckets(bounds[keep], sizes[keep], widths[keep], remap[bucket_of])


def _phoneme_targets(config: ml_collections.ConfigDict, data: Split, timings: np.ndarray,
                     filled: np.ndarray, num_samples: int) -> np.ndarray:
  """int32 [rows, frames of `num_samples` samples]: each row's `phoneme_times.frame_targets`
  over the feature frames its utterance fills, -1 over the padding and throughout a row
  without a timing file (`timings[u] == ''`)."""
  c = config.features
  targets = np.full((len(filled), int(features.num_frames(num_samples, c.window, c.hop))), -1,
                    np.int32)
  for r, u in enumerate(filled):
    if timings[u]:
      frames = int(features.num_frames(data.lengths[u], c.window, c.hop))
      targets[r, :frames] = phoneme_times.frame_targets(
          phoneme_times.read_timing(timings[u]), frames, config)
  return targets


def _assemble(data: Split, languages: np.ndarray, engines: np.ndarray, rows: np.ndarray,
              size: int, num_samples: int, label_width: int, block: slice,
              timings: np.ndarray | None = None, config: ml_collections.ConfigDict | None = None
              ) -> dict[str, np.ndarray]:
  """Rows `block` of one padded batch of utterances `rows`; filler rows repeat rows[0] with
  weight 0. Only the block's audio is read. With `timings` (each utterance's timing file, ''
  for none), 'phonemes' holds each row's `phoneme_times.frame_targets` over the batch's feature
  frames, -1 where there is none."""
  filled = np.concatenate([rows, np.full(size - len(rows), rows[0])])
  real = (np.arange(size) < len(rows))[block]
  filled = filled[block]
  audio = np.zeros((len(filled), num_samples), np.float32)
  labels = np.zeros((len(filled), label_width), np.int32)
  paddings = np.ones((len(filled), label_width), np.float32)
  for r, u in enumerate(filled):
    samples = data.read(u)
    audio[r, :len(samples)] = samples
    ids = data.label_ids(u)
    labels[r, :len(ids)] = ids
    paddings[r, :len(ids)] = 0.0
  audio *= 1.0 / 32768.0
  return {
      'audio': audio,
      'audio_lengths': data.lengths[filled].astype(np.int32),
      'labels': labels,
      'label_paddings': paddings,
      'id': np.where(real, data.ids[filled], ''),
      'text': np.array([data.text(u) if keep else '' for u, keep in zip(filled, real)]),
      'weights': real.astype(np.float32),
      'rows': np.array([block.start, size]),
      'index': filled.astype(np.int64),
      'language': languages[filled],
      'engine': engines[filled],
      **({} if timings is None else
         {'phonemes': _phoneme_targets(config, data, timings, filled, num_samples)}),
  }


def epoch_plan(buckets: Buckets, seed: int, epoch: int, sorted_epochs: int = 0
               ) -> list[np.ndarray]:
  """Batches (positions into the bucketed utterances) of one training epoch, in order.

  A pure function of (seed, epoch): a numpy generator seeded by both shuffles the
  utterances, cuts each bucket into batches and shuffles the batches; in the first
  `sorted_epochs` epochs (`data.sorted_epochs`, SortaGrad) it shuffles each bucket's batches
  and gives the buckets from the shortest to the longest.
  """
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(buckets.bucket_of))
  plan = []
  for k, size in enumerate(buckets.batch_sizes):
    members = order[buckets.bucket_of[order] == k]
    plan += [members[i:i + size] for i in range(0, len(members), size)]
  if epoch < sorted_epochs:
    by_length = np.argsort(buckets.bounds)
    bucket = np.array([buckets.bucket_of[b[0]] for b in plan])
    return [plan[j] for k in by_length for j in rng.permutation(np.flatnonzero(bucket == k))]
  return [plan[j] for j in rng.permutation(len(plan))]


class _Plans:
  """Epoch plans, made once each and shared by grain's reading threads."""

  def __init__(self, buckets: Buckets, seed: int, sorted_epochs: int = 0):
    self._buckets, self._seed, self._sorted_epochs = buckets, seed, sorted_epochs
    self._lock = threading.Lock()
    self._plans: dict[int, list[np.ndarray]] = {}
    self.steps_per_epoch = len(self.plan(0))

  def plan(self, epoch: int) -> list[np.ndarray]:
    with self._lock:
      if epoch not in self._plans:
        if len(self._plans) >= 2:
          self._plans.pop(min(self._plans))
        self._plans[epoch] = epoch_plan(self._buckets, self._seed, epoch,
                                        self._sorted_epochs)
      return self._plans[epoch]

  def batch(self, step: int) -> np.ndarray:
    epoch, i = divmod(step, self.steps_per_epoch)
    return self.plan(epoch)[i]


def batches(config: ml_collections.ConfigDict, split: str, *, train: bool, seed: int = 0,
            start_step: int = 0, batch_multiple: int = 1, max_utterances: int = 0,
            process_index: int = 0, process_count: int = 1,
            share: tuple[int, int] = (0, 1)) -> Iterator[dict[str, np.ndarray]]:
  """Padded, length-bucketed numpy batches of a split, read from disk as they are needed.

  Args:
    config: the experiment config (uses `config.data`).
    split: split name, e.g. 'train', 'dev' (see `sources`).
    train: True: endless, reshuffled every epoch, utterances longer than
      `config.data.max_seconds` dropped, batch i a pure function of (seed, i). False: one pass
      over every utterance exactly once, bucket by bucket, id order inside a bucket.
    seed: non-negative seed of the training order.
    start_step: the first batch is the one a pass from step 0 gets at this step; the batches
      before it are never read (a resumed training run or NAvAI pass).
    batch_multiple: every batch size is a multiple of this (the number of data-parallel
      devices of all processes).
    max_utterances: > 0: use only this many utterances, evenly spaced over the id-sorted split
      (so every speaker is represented).
    process_index, process_count: yield only block `process_index` of `process_count` equal
      blocks of every batch's rows (`batch_multiple` must be a multiple of `process_count`).
    share: `(k, n)`, evaluation only: yield only batches k, k + n, k + 2n, ... of the pass (a
      host's own share of a NAvAI pass); the others are never read.
  Yields:
    dicts with 'audio' float32 [B, A] in [-1, 1] zero-padded, 'audio_lengths' int32 [B],
    'labels' int32 [B, L] padded with 0, 'label_paddings' float32 [B, L] (1.0 where padded),
    'id' and 'text' str [B], 'weights' float32 [B], 'rows' int64 [2] (the first row of this
    block and the global batch size), 'index' int64 [B] (each row's utterance in the id-sorted
    split, `sources.load_split`), 'language' int32 [B] (0: the corpus's own speech, k: the
    k-th of `other_languages.LANGUAGES`), 'engine' int32 [B] (`engine_ids`), and in training
    with `train.phoneme_head` 'phonemes' int32 [B, feature frames of A] (each frame's
    `phoneme_times.frame_targets`, -1 for none and over the padding). Filler rows
    (weight 0, id and text '') repeat the batch's first utterance, so every row gives finite
    features and losses.
  """
  if batch_multiple < 1:
    raise ValueError(f'batch_multiple must be >= 1, got {batch_multiple}.')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}.')
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}.')
  if not 0 <= process_index < process_count or batch_multiple % process_count:
    raise ValueError(f'process {process_index} of {process_count} needs batch_multiple '
                     f'(got {batch_multiple}) to be a multiple of the process count.')
  if not 0 <= share[0] < share[1] or (train and share != (0, 1)):
    raise ValueError(f'share must be (k, n) with 0 <= k < n, for evaluation only; got {share}.')
  data = load_split(config, split)
  use = np.arange(len(data))
  if 0 < max_utterances < len(data):
    use = np.unique(np.linspace(0, len(data) - 1, max_utterances).round().astype(np.int64))
  if train:
    use = engine_rows(config, data, use)
    limit = config.data.max_seconds * librispeech.SAMPLE_RATE
    too_long = data.lengths[use] > limit
    if too_long.any():
      logging.warning('Training on %s: dropped %d of %d utterances longer than %.1f s.', split,
                      too_long.sum(), len(use), config.data.max_seconds)
      use = use[~too_long]
    if not len(use):
      raise DataError(f'No utterance of split {split!r} is at most '
                      f'{config.data.max_seconds} s long (config.data.max_seconds).')
  languages = other_languages.language_ids(config, split, data)
  engines = engine_ids(config, data)
  if train and config.get('train', {}).get('engine_adversary') and not engines[use].any():
    raise DataError(f'config.train.engine_adversary={config.train.engine_adversary} needs a '
                    "corpus folder whose SPEAKERS.txt names each speaker's engine; no speaker "
                    f'of {split!r} in {config.data.source} has one.')
  timings = None
  if train and config.get('train', {}).get('phoneme_head'):
    found = {i: path for i, path in phoneme_times.find_timings(config).items()
             if phoneme_times.read_timing(path).get('inventory') == 'arpabet'}
    timings = np.array([found.get(str(i), '') for i in data.ids], object)
    if not any(timings[use]):
      raise DataError(f'config.train.phoneme_head={config.train.phoneme_head} needs true '
                      'phoneme times in ARPAbet (the .timing.json files of a corpus that '
                      f'make_corpus.py made); no utterance of {split!r} in '
                      f'{config.data.source} has them.')
  buckets = make_buckets(data.lengths[use], data.label_lengths[use],
                         num_buckets=config.data.num_buckets,
                         batch_seconds=config.data.batch_seconds, batch_multiple=batch_multiple)

  def batch(positions: np.ndarray) -> dict[str, np.ndarray]:
    k = buckets.bucket_of[positions[0]]
    size = int(buckets.batch_sizes[k])
    rows = size // process_count
    return _assemble(data, languages, engines, use[positions], size, int(buckets.bounds[k]),
                     int(buckets.label_widths[k]),
                     slice(process_index * rows, (process_index + 1) * rows), timings, config)

  if train:
    plans = _Plans(buckets, seed, config.data.get('sorted_epochs', 0))
    steps = grain.MapDataset.range(start_step, start_step + _ENDLESS).map(
        lambda step: batch(plans.batch(step)))
  else:
    plan = []
    for k, size in enumerate(buckets.batch_sizes):
      members = np.flatnonzero(buckets.bucket_of == k)
      plan += [members[i:i + size] for i in range(0, len(members), size)]
    steps = grain.MapDataset.source(plan[share[0]::share[1]][start_step:]).map(batch)
  threads = config.data.get('read_threads', 4)
  if threads < 1:
    yield from (steps[i] for i in range(len(steps)))
    return
  yield from steps.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                     prefetch_buffer_size=2 * threads))
