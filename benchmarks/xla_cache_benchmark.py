"""What the job's compilation cache (`core.xla_cache`) saves a stage that runs again.

  python benchmarks/xla_cache_benchmark.py --corpus=data/corpus --steps=60 --rounds=2

Trains the `--preset` model for `--steps` steps on `--corpus` and evaluates it on the test
split, as the main job's stages 2 and 3 do (one process each, in a fresh run folder every
time), three ways per round: without the cache, with an empty cache, and with the cache the
empty run filled (a rerun, or a resumed run of the same settings). Prints the
seconds of each, the warm run's share of the uncached one, and whether the three trained states
are equal to the bit. The ways alternate within each round; the best round of each is kept,
all rounds printed.
"""

import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from navai_jax.core import xla_cache

_CORPUS = flags.DEFINE_string('corpus', 'data/corpus', 'Corpus folder (make_corpus.py).')
_PRESET = flags.DEFINE_string('preset', 'small', 'Model preset.')
_STEPS = flags.DEFINE_integer('steps', 60, 'Training steps of each run.', lower_bound=1)
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Rounds of the three ways.', lower_bound=1)

ROOT = Path(__file__).resolve().parent.parent
WAYS = ('no cache', 'empty cache', 'filled cache')


def _stages(workdir: Path, cache: str | None) -> float:
  """Seconds of training then evaluating in `workdir`, each in its own process."""
  env = {k: v for k, v in os.environ.items() if k != xla_cache.ENV}
  env.update({xla_cache.ENV: cache} if cache else {})
  config = f'--config={ROOT}/navai_jax/configs/default.py:{_PRESET.value}'
  commands = [
      ['train.py', config, f'--workdir={workdir}', f'--config.data.source=folder:{_CORPUS.value}',
       '--config.data.reader=direct', f'--config.train.num_steps={_STEPS.value}',
       '--config.train.eval_every=0', f'--config.train.log_every={_STEPS.value}'],
      ['evaluate.py', f'--workdir={workdir}', '--split=test']]
  start = time.perf_counter()
  for script, *args in commands:
    done = subprocess.run([sys.executable, str(ROOT / 'experiments' / script), *args],
                          env=env, capture_output=True, text=True)
    if done.returncode:
      sys.exit(f'xla_cache_benchmark.py: {script} failed:\n{done.stderr[-2000:]}')
  return time.perf_counter() - start


def _state(workdir: Path) -> list[np.ndarray]:
  restored = ocp.StandardCheckpointer().restore(workdir / 'checkpoints' / str(_STEPS.value) /
                                                'state')
  return [np.asarray(leaf) for leaf in jax.tree.leaves(restored)]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's restore logs
  if not (Path(_CORPUS.value) / 'train').is_dir():
    sys.exit(f'xla_cache_benchmark.py: no corpus at {_CORPUS.value} (make_corpus.py makes one).')
  seconds = {way: [] for way in WAYS}
  with tempfile.TemporaryDirectory() as tmp:
    states = {}
    for r in range(_ROUNDS.value):
      cache = f'{tmp}/cache{r}'
      for way, cache_of_way in zip(WAYS, (None, cache, cache)):
        workdir = Path(tmp) / f'run{r}_{WAYS.index(way)}'
        seconds[way].append(_stages(workdir, cache_of_way))
        states[way] = _state(workdir)
    same = all(all(np.array_equal(a, b) for a, b in zip(states[WAYS[0]], states[way]))
               for way in WAYS[1:])
  best = {way: min(s) for way, s in seconds.items()}
  print(f'Training {_STEPS.value} steps of `{_PRESET.value}` and evaluating the test split, '
        f'two processes, best of {_ROUNDS.value} rounds (all rounds):')
  for way in WAYS:
    print(f'  {way:13s} {best[way]:6.1f} s  ({", ".join(f"{s:.1f}" for s in seconds[way])})')
  print(f'Filled cache: {best[WAYS[2]] / best[WAYS[0]]:.2f}x the uncached time; trained states '
        f'{"equal to the bit" if same else "DIFFERENT"} across the three ways.')
  print(f'Rerun: python benchmarks/xla_cache_benchmark.py --corpus={_CORPUS.value} '
        f'--preset={_PRESET.value} --steps={_STEPS.value} --rounds={_ROUNDS.value}')


if __name__ == '__main__':
  app.run(main)
