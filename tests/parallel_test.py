"""Prefetching to the devices: order kept, errors raised where they were, threads end."""

import itertools
import threading
import time

import numpy as np
import pytest

from navai_jax.training import parallel


def _numbered_batch(i: int) -> dict[str, np.ndarray]:
  return {'audio': np.full((4, 3), i, np.float32), 'audio_lengths': np.full(4, 3, np.int32),
          'labels': np.full((4, 2), i, np.int32), 'label_paddings': np.zeros((4, 2), np.float32),
          'weights': np.ones(4, np.float32)}


def _prefetch_threads_alive() -> bool:
  for _ in range(50):
    if not any(t.name == 'prefetch' and t.is_alive() for t in threading.enumerate()):
      return False
    time.sleep(0.05)
  return True


def test_prefetch_keeps_order_and_raises_where_the_error_was():
  mesh = parallel.make_mesh()  # Four forced CPU devices.

  def batches():
    yield from (_numbered_batch(i) for i in range(5))
    raise ValueError('batch 5 is broken')

  got = []
  with pytest.raises(ValueError, match='batch 5 is broken'):
    for batch, device_batch in parallel.prefetch(batches(), mesh, size=2):
      assert device_batch['audio'].sharding.is_equivalent_to(parallel.batch_sharded(mesh), 2)
      for k in parallel.ARRAY_FIELDS:
        np.testing.assert_array_equal(np.asarray(device_batch[k]), batch[k])
      got.append(int(batch['audio'][0, 0]))
  assert got == [0, 1, 2, 3, 4]
  assert not _prefetch_threads_alive()


def test_prefetch_thread_ends_when_the_consumer_stops():
  endless = parallel.prefetch((_numbered_batch(i) for i in itertools.count()),
                              parallel.make_mesh(), size=3)
  assert [int(b['labels'][0, 0]) for b, _ in itertools.islice(endless, 4)] == [0, 1, 2, 3]
  endless.close()
  assert not _prefetch_threads_alive()
  with pytest.raises(ValueError, match='size must be >= 1'):
    next(parallel.prefetch(iter([]), parallel.make_mesh(), size=0))
