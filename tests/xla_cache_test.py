"""The job's compilation cache: one folder per processor, and a program loaded from it computes
what the compiled one did."""

import os
from pathlib import Path
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from navai_jax.core import xla_cache

CPUINFO = ('processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\n'
           'flags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n'
           'model name\t: Intel(R) Xeon(R) CPU\nflags\t\t: fpu sse2 avx2 avx512f\n')

PROGRAM = """
import jax, jax.numpy as jnp, numpy as np, sys
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
x = jax.random.normal(jax.random.key(0), (96, 96))
y = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)(x)
np.save(sys.argv[1], np.asarray(y))
print(*(sum(e.endswith(kind) for e in events) for kind in ('/cache_hits', '/cache_misses')))
"""


class XlaCacheTest(absltest.TestCase):

  def test_one_folder_per_processor(self):
    key = xla_cache.processor_key(CPUINFO)
    self.assertRegex(key, r'^cpu-[0-9a-f]{12}$')
    self.assertEqual(key, xla_cache.processor_key(CPUINFO))
    self.assertNotEqual(key, xla_cache.processor_key(CPUINFO.replace(' avx512f', '', 1)))
    self.assertNotEqual(key, xla_cache.processor_key(CPUINFO.replace('Xeon', 'EPYC', 1)))
    self.assertEqual(key, xla_cache.processor_key(CPUINFO.split('\n\n')[0]))  # first CPU only
    self.assertRegex(xla_cache.processor_key(''), r'^cpu-[0-9a-f]{12}$')  # no /proc/cpuinfo
    self.assertEqual(xla_cache.folder('runs/x'),
                     Path('runs/x/xla_cache') / xla_cache.processor_key())

  def test_a_folder_the_user_chose_is_kept(self):
    with absltest.mock.patch.dict(os.environ, {xla_cache.ENV: '/elsewhere'}):
      self.assertEqual(xla_cache.environment('runs/x')[xla_cache.ENV], '/elsewhere')
    with absltest.mock.patch.dict(os.environ, clear=False):
      os.environ.pop(xla_cache.ENV, None)
      env = xla_cache.environment('runs/x')
      self.assertEqual(env[xla_cache.ENV], str(xla_cache.folder('runs/x')))
      self.assertEqual(env['PATH'], os.environ['PATH'])

  def test_a_loaded_program_computes_what_the_compiled_one_did(self):
    tmp = Path(self.enterContext(tempfile.TemporaryDirectory()))
    env = {**os.environ, xla_cache.ENV: str(xla_cache.folder(tmp)), 'JAX_PLATFORMS': 'cpu',
           'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}  # cache even quick compiles

    def hits_and_misses(out: str) -> list[int]:
      done = subprocess.run([sys.executable, '-c', PROGRAM, str(tmp / out)], env=env,
                            check=True, capture_output=True, text=True)
      return [int(n) for n in done.stdout.split()]

    hits, misses = hits_and_misses('compiled.npy')
    self.assertEqual(hits, 0)
    self.assertGreater(misses, 0)
    self.assertLen(list(xla_cache.folder(tmp).glob('*-cache')), misses)
    self.assertEqual(hits_and_misses('loaded.npy'), [misses, 0])  # every program loaded
    np.testing.assert_array_equal(np.load(tmp / 'compiled.npy'), np.load(tmp / 'loaded.npy'))


if __name__ == '__main__':
  absltest.main()
