"""What the benchmark scripts share: random weights with batch statistics, and a timer."""

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.recognizer import model
from navai_jax.recognizer import vocab


def random_variables(config: ml_collections.ConfigDict, key: jax.Array, seed: int) -> Any:
  """Initial weights (from `key`) with batch statistics drawn around their initial values."""
  variables = model.init_variables(config, key)
  rng = np.random.default_rng(seed)
  stats = {name: {'mean': rng.normal(0, 0.1, s['mean'].shape).astype(np.float32),
                  'var': rng.uniform(0.5, 1.5, s['var'].shape).astype(np.float32)}
           for name, s in variables['batch_stats'].items()}
  return {'params': variables['params'], 'batch_stats': jax.tree.map(jnp.asarray, stats)}


def timed(fn: Callable[[], Any], repeats: int = 0) -> tuple[Any, float, list[float]]:
  """`(result, seconds of the first call, seconds of each of `repeats` further calls)`; every
  call is waited for (`jax.block_until_ready`)."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return out, first, times


def letter_variables(config: ml_collections.ConfigDict) -> Any:
  """Initial weights whose output bias favours the letters, so that almost every output
  position is a letter frame (for NAvAI timings, whose cost per frame does not depend on the
  weights' values)."""
  variables = model.init_variables(config, jax.random.key(0))
  letters = (jnp.arange(vocab.SIZE) >= vocab.LETTER_IDS[0]) & (
      jnp.arange(vocab.SIZE) <= vocab.LETTER_IDS[-1])
  variables['params']['conv_12']['bias'] = jnp.where(letters, 0.0, -10.0)
  return variables
