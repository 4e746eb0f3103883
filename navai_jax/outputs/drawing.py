"""Figures drawn in worker processes while the caller goes on computing.

Drawing is single-threaded Python (matplotlib), most of a NAvAI result's figure time: with two
processes the figures take half as long. The processes are spawned (not forked from a process
running JAX's threads) and get the shared arguments once each.
"""

import concurrent.futures
import multiprocessing
from typing import Any, Callable

_SHARED: dict[str, Any] = {}  # The shared arguments inside a worker process.


def _start(shared: tuple) -> None:
  _SHARED['args'] = shared


def _draw(function: Callable, *args) -> None:
  function(*_SHARED['args'], *args)


def draw(jobs: list[tuple], shared: tuple, workers: int) -> Callable[[], None]:
  """Calls `function(*shared, *args)` for each `(function, *args)` of `jobs` in `workers`
  processes (here, at once, for one) and returns a function that waits for all of them and
  raises their errors: call it before reading the files."""
  if workers <= 1:
    for function, *args in jobs:
      function(*shared, *args)
    return lambda: None
  pool = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'), initializer=_start,
      initargs=(shared,))
  futures = [pool.submit(_draw, *job) for job in jobs]

  def wait():
    try:
      for future in futures:
        future.result()
    finally:
      pool.shutdown(cancel_futures=True)
  return wait
