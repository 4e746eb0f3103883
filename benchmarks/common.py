"""What the benchmark scripts share: random weights with batch statistics, a timer, zennit
next to a CPU-only torch, and the relative error of two batches of maps."""

import importlib
import statistics
import sys
import time
import types
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


def timed_median(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
  """`(result, first-call seconds, steady seconds)`: `timed`, the median of the repeats."""
  out, first, times = timed(fn, repeats)
  return out, first, statistics.median(times)


def letter_variables(config: ml_collections.ConfigDict) -> Any:
  """Initial weights whose output bias favours the letters, so that almost every output
  position is a letter frame (for NAvAI timings, whose cost per frame does not depend on the
  weights' values)."""
  variables = model.init_variables(config, jax.random.key(0))
  letters = (jnp.arange(vocab.SIZE) >= vocab.LETTER_IDS[0]) & (
      jnp.arange(vocab.SIZE) <= vocab.LETTER_IDS[-1])
  variables['params']['conv_12']['bias'] = jnp.where(letters, 0.0, -10.0)
  return variables


def import_zennit():
  """zennit, importable next to a CPU-only torch.

  zennit imports torchvision at start-up only for the ResNet canonizers and the class of
  `torchvision.ops.FrozenBatchNorm2d`. The torchvision wheels on PyPI are CUDA builds whose
  compiled operators do not load next to a CPU torch wheel; then a stand-in module with those
  three names is registered, which this network (Conv1d, BatchNorm1d, ReLU) never meets.
  """
  try:
    importlib.import_module('torchvision')
  except (ImportError, OSError, RuntimeError) as error:
    import torch
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
      del sys.modules[name]
    stand_in = {name: types.ModuleType(name) for name in (
        'torchvision', 'torchvision.ops', 'torchvision.models', 'torchvision.models.resnet')}
    stand_in['torchvision.ops'].FrozenBatchNorm2d = type('FrozenBatchNorm2d',
                                                          (torch.nn.Module,), {})
    for block in ('Bottleneck', 'BasicBlock'):
      setattr(stand_in['torchvision.models.resnet'], block, type(block, (torch.nn.Module,), {}))
    stand_in['torchvision'].ops = stand_in['torchvision.ops']
    stand_in['torchvision'].models = stand_in['torchvision.models']
    stand_in['torchvision.models'].resnet = stand_in['torchvision.models.resnet']
    sys.modules.update(stand_in)
    print(f'torchvision does not load here ({type(error).__name__}: {error}); zennit runs with '
          'a stand-in for the torchvision names it imports.')
  return importlib.import_module('zennit')


def errors(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ('ours', 'zennit')) -> str:
  """Relative differences of two batches of relevance maps, relative to `b` (maps that are
  zero in `b`, such as a channel without relevance, are counted and left out of the first)."""
  norm = lambda m: np.linalg.norm(m.reshape(len(m), -1), axis=1)
  x, y = names
  some = norm(b) > 0
  zero = f' ({np.sum(~some)} maps all zero in {y}; {x} there: max |{x}| = ' \
         f'{np.max(np.abs(a[~some])):.1e})' if not some.all() else ''
  return (f'max over frames of |{x} - {y}|_2 / |{y}|_2 = '
          f'{np.max(norm(a[some] - b[some]) / norm(b[some])):.1e}, '
          f'max |{x} - {y}| / max |{y}| = {np.max(np.abs(a - b)) / np.max(np.abs(b)):.1e}{zero}')
