"""Compiled programs shared by the processes of one job: JAX's persistent compilation cache, in a
folder of its own per processor.

A job that runs its stages as separate processes (`experiments/main.py`, `ablation.py`) compiles
its XLA programs again on every rerun; with the cache, a rerun (after an interruption, or to
redo a stage) loads them instead. A loaded program is the one compilation would have made, so
the numbers are the same to the bit. Different runs seldom share programs: the seed is a
constant of the training step, and the length buckets follow each run's utterances.

JAX's cache key holds the program, the JAX version and the device kind, but not which CPU
compiled it, and XLA compiles for the host's instruction set: a folder shared by machines of
different processors (a home folder on a cluster) could hand one machine another's code. So the
folder is one per processor: `ROOT/xla_cache/cpu-HASH`, HASH of the CPU's model name and
instruction-set flags.

The folder only grows (the main job's programs take 70-90 MB; programs of code since changed
stay), and deleting it is always safe: what is missing is compiled again. JAX writes an entry
in place, so one cut short by a killed process makes later runs warn and compile that program.
"""

import hashlib
import os
from pathlib import Path
import platform

ENV = 'JAX_COMPILATION_CACHE_DIR'  # JAX reads its cache folder from this variable


def processor_key(cpuinfo: str | None = None) -> str:
  """`cpu-` and 12 hex digits naming this machine's CPU: its model name and instruction-set
  flags (`/proc/cpuinfo`'s first processor on Linux, `platform` elsewhere). `cpuinfo` stands in
  for `/proc/cpuinfo` (tests)."""
  if cpuinfo is None:
    try:
      cpuinfo = Path('/proc/cpuinfo').read_text()
    except OSError:
      cpuinfo = ''
  first = cpuinfo.split('\n\n')[0]
  fields = {k.strip(): v.strip() for k, _, v in (l.partition(':') for l in first.splitlines())}
  described = [fields.get(k, '') for k in ('vendor_id', 'model name', 'flags', 'Features',
                                           'CPU implementer', 'CPU part')]
  if not any(described):
    described = [platform.processor()]
  identity = '\n'.join([platform.machine(), *described])
  return 'cpu-' + hashlib.sha256(identity.encode()).hexdigest()[:12]


def folder(root: str | os.PathLike) -> Path:
  """The cache folder of this processor under `root` (`root/xla_cache/cpu-HASH`)."""
  return Path(root) / 'xla_cache' / processor_key()


def environment(root: str | os.PathLike) -> dict[str, str]:
  """This process's environment for a stage's process, with the cache under `root`; a
  JAX_COMPILATION_CACHE_DIR the user set is kept as it is."""
  env = dict(os.environ)
  env.setdefault(ENV, str(folder(root)))
  return env
