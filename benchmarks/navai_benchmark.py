"""Frames per second of the whole NAvAI pipeline, and its peak memory for N and 4N utterances.

  python benchmarks/navai_benchmark.py --presets=small,paper --utterances=4 \
      --memory_preset=small --memory_utterances=8

Each measurement runs `navai.run_pass` (features, SAME pass, frames, sensitivity, LRP, the
four alignments, accumulation of letter moments) in a fresh subprocess, so its peak resident
memory (`ru_maxrss`) is its own:

* throughput, per preset: one batch first (compiles the step), then `--utterances`
  utterances timed; frames per second = letter frames folded / seconds;
* memory: passes over N = `--memory_utterances` and 4N utterances of `--memory_preset`;
  the accumulator's size does not depend on the number of frames, so the two peaks should
  differ by well under 10%.

Audio is synthetic (harmonic tones gliding under noise, `--seconds` long), the weights random
with the output bias set against non-letters, so almost every output position whose window
lies inside the utterance is a letter frame; the cost per frame does not depend on the
weights' values. Batches are generated on the fly, so they add nothing to memory either.
"""

import json
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from navai_jax import model
from navai_jax import navai
from navai_jax import vocab
from navai_jax.configs import default

_PRESETS = flags.DEFINE_list('presets', ['small', 'paper'], 'Presets whose throughput to time.')
_UTTERANCES = flags.DEFINE_integer('utterances', 4, 'Timed utterances per preset.')
_SECONDS = flags.DEFINE_float('seconds', 3.0, 'Seconds per synthetic utterance.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 2, 'Utterances per batch.')
_FRAME_BATCH = flags.DEFINE_integer('frame_batch', 64, 'Frames per attribution chunk.')
_MEMORY_PRESET = flags.DEFINE_string('memory_preset', 'small',
                                     "Preset of the N-versus-4N memory runs ('' = none).")
_MEMORY_UTTERANCES = flags.DEFINE_integer('memory_utterances', 8, 'N of the memory runs.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: run one measurement, "PRESET:UTTERANCES".')


def synthetic_batches(num_utterances: int, batch_size: int, seconds: float, seed: int = 0):
  """Batches of tone-and-noise utterances, generated one at a time."""
  rng = np.random.default_rng(seed)
  n = int(seconds * 16000)
  t = np.arange(n) / 16000
  for first in range(0, num_utterances, batch_size):
    rows = min(batch_size, num_utterances - first)
    audio = np.zeros((batch_size, n), np.float32)
    for r in range(rows):
      f0 = 100 + 100 * rng.random() + 50 * np.sin(2 * np.pi * rng.random() * t)
      phase = 2 * np.pi * np.cumsum(f0) / 16000
      audio[r] = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1
      audio[r] += 0.02 * rng.normal(size=n)
    weights = (np.arange(batch_size) < rows).astype(np.float32)
    yield {'audio': audio, 'audio_lengths': np.full(batch_size, n, np.int32),
           'weights': weights, 'id': np.array([''] * batch_size),
           'text': np.array([''] * batch_size)}


def measure(preset: str, num_utterances: int) -> dict:
  """One pass after a compiling warm-up batch; frames, seconds and peak memory."""
  config = default.get_config(preset)
  variables = model.init_variables(config, jax.random.key(0))
  letters = (jnp.arange(vocab.SIZE) >= vocab.LETTER_IDS[0]) & (
      jnp.arange(vocab.SIZE) <= vocab.LETTER_IDS[-1])
  variables['params']['conv_12']['bias'] = jnp.where(letters, 0.0, -10.0)
  kw = dict(frame_batch=_FRAME_BATCH.value, save_every=10**9)
  start = time.perf_counter()
  navai.run_pass(config, variables, synthetic_batches(_BATCH_SIZE.value, _BATCH_SIZE.value,
                                                      _SECONDS.value, seed=1), **kw)
  warmup = time.perf_counter() - start
  start = time.perf_counter()
  result = navai.run_pass(config, variables, synthetic_batches(
      num_utterances, _BATCH_SIZE.value, _SECONDS.value), **kw)
  seconds = time.perf_counter() - start
  return {'preset': preset, 'utterances': num_utterances, 'frames': result.frames,
          'seconds': seconds, 'frames_per_second': result.frames / seconds,
          'warmup_seconds': warmup, 'devices': jax.local_device_count(),
          'device': jax.devices()[0].device_kind,
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_subprocess(preset: str, num_utterances: int) -> dict:
  flags_ = [f'--{name}={flags.FLAGS[name].serialize().split("=", 1)[1]}'
            for name in ('seconds', 'batch_size', 'frame_batch')]
  out = subprocess.run([sys.executable, __file__, f'--child={preset}:{num_utterances}'] + flags_,
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(argv):
  del argv
  if _CHILD.value:
    preset, num = _CHILD.value.split(':')
    print(json.dumps(measure(preset, int(num))))
    return
  print('command:', ' '.join(sys.argv))
  for preset in _PRESETS.value:
    r = in_subprocess(preset, _UTTERANCES.value)
    print(f'{preset}: {r["frames"]} frames of {r["utterances"]} x {_SECONDS.value:g} s in '
          f'{r["seconds"]:.1f} s = {r["frames_per_second"]:.1f} frames/s on {r["devices"]} '
          f'{r["device"]} device(s) (warm-up batch incl. compile {r["warmup_seconds"]:.1f} s, '
          f'peak RSS {r["peak_rss_mb"]:.0f} MB)')
  if _MEMORY_PRESET.value:
    n = _MEMORY_UTTERANCES.value
    small, large = (in_subprocess(_MEMORY_PRESET.value, k) for k in (n, 4 * n))
    change = large['peak_rss_mb'] / small['peak_rss_mb'] - 1
    print(f'{_MEMORY_PRESET.value} peak RSS: {small["peak_rss_mb"]:.0f} MB for {n} utterances '
          f'({small["frames"]} frames), {large["peak_rss_mb"]:.0f} MB for {4 * n} '
          f'({large["frames"]} frames): {change:+.1%}')


if __name__ == '__main__':
  app.run(main)
