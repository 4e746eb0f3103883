"""Data parallelism: a 1-D device mesh, batches split on their first axis, parameters replicated.

With several processes (hosts), every process reads only its own contiguous block of every
batch's rows (`data.batches(..., process_index, process_count)`) and hands it to its local
devices; `jax.make_array_from_process_local_data` assembles the global array.
"""

import queue
import threading
from typing import Any, Iterator, Mapping, Optional, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

PyTree = Any

DATA_AXIS = 'data'
# Batch fields that go to the devices; 'id' and 'text' stay on the host. 'language', 'engine'
# and 'phonemes' (from `data.batches`; `train.language_heads`, `train.engine_adversary` and
# `train.phoneme_head` read them) go too where a batch has them.
ARRAY_FIELDS = ('audio', 'audio_lengths', 'labels', 'label_paddings', 'weights')
OPTIONAL_FIELDS = ('language', 'engine', 'phonemes')


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all devices of all processes)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Split on the first axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """A copy of every array of `tree` on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def _fields(batch: Mapping[str, np.ndarray]) -> tuple[str, ...]:
  return ARRAY_FIELDS + tuple(k for k in OPTIONAL_FIELDS if k in batch)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """The array fields of a global numpy batch as global arrays split over `mesh`.

  Raises:
    ValueError: the batch size is not a multiple of the number of devices.
  """
  if 'rows' in batch:  # `data.batches`: this process's block of rows; [first row, size]
    size = int(batch['rows'][1])
    local = {k: np.asarray(batch[k]) for k in _fields(batch)}
  else:  # a whole global batch, of which this process takes its block
    size = len(batch['weights'])
    rows = size // jax.process_count()
    first = jax.process_index() * rows
    local = {k: np.asarray(batch[k][first:first + rows]) for k in _fields(batch)}
  if size % mesh.size:
    raise ValueError(f'Batch of {size} rows does not split over {mesh.size} devices; ask the '
                     f'data pipeline for batch_multiple={mesh.size}.')
  if len(local['weights']) * jax.process_count() != size:
    raise ValueError(f'This process holds {len(local["weights"])} rows of a batch of {size} '
                     f'over {jax.process_count()} processes; ask the data pipeline for '
                     f'process_count={jax.process_count()}.')
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v, (size,) + v.shape[1:])
          for k, v in local.items()}


def prefetch(batches: Iterator[Mapping[str, np.ndarray]], mesh: Mesh, size: int = 2
             ) -> Iterator[tuple[Mapping[str, np.ndarray], dict[str, jax.Array]]]:
  """Yields `(batch, shard_batch(batch, mesh))` of `batches`, made `size` batches ahead.

  A background thread draws the batches and copies them to the devices while the devices
  compute, so the host's part of a training step (assembling the numpy batch, the copy) does
  not leave them idle. The order is that of `batches`; an exception raised by `batches` or by
  the copy is raised here, where its batch would have come. Closing the generator (or dropping
  it) lets the thread end at its next batch.
  """
  if size < 1:
    raise ValueError(f'prefetch size must be >= 1, got {size}.')
  slots: queue.Queue = queue.Queue(maxsize=size)
  stopped = threading.Event()

  def put(item) -> bool:
    while not stopped.is_set():
      try:
        slots.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def work():
    try:
      for batch in batches:
        if not put(('batch', (batch, shard_batch(batch, mesh)))):
          return
      put(('end', None))
    except BaseException as e:  # pylint: disable=broad-except  (re-raised by the consumer)
      put(('error', e))

  thread = threading.Thread(target=work, name='prefetch', daemon=True)
  thread.start()
  try:
    while True:
      kind, value = slots.get()
      if kind == 'end':
        return
      if kind == 'error':
        raise value
      yield value
  finally:
    stopped.set()


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) global array as numpy, on every process."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
