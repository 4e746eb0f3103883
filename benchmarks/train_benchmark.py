"""Training throughput in audio-seconds per second of the jitted train step.

  python benchmarks/train_benchmark.py --preset=small --steps=5

Times the step that `navai_jax.train.train` runs (features, augmentation, masked batch norm,
CTC, AdamW) on one made-up batch of the preset's `data.batch_seconds` of audio: utterances of
`--utterance_seconds` of noise with random transcripts of 15 letters per second (a step's
cost does not depend on what the audio says). The step is compiled ahead of time, so compile
time is reported on its own; it runs once to warm up, then `--steps` steps are timed and the
fastest of `--repeats` timed runs counts (the machine may be shared). Uses every local device,
as training does.
"""

import time

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from navai_jax import parallel
from navai_jax import train
from navai_jax import vocab
from navai_jax.configs import default

_PRESET = flags.DEFINE_enum('preset', 'small', list(default.PRESETS), 'Config preset.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per run.')
_REPEATS = flags.DEFINE_integer('repeats', 1, 'Timed runs; the fastest counts.')
_UTTERANCE_SECONDS = flags.DEFINE_float('utterance_seconds', 4.0,
                                        'Length of every utterance of the batch.')

for _name in ('steps', 'repeats'):
  flags.register_validator(_name, lambda v: v >= 1, f'--{_name} must be >= 1.')
flags.register_validator('utterance_seconds', lambda s: s >= 2.0,
                         '--utterance_seconds must be >= 2 (one receptive field is 1.7 s).')


def made_up_batch(config: ml_collections.ConfigDict, utterance_seconds: float,
                  batch_multiple: int) -> dict[str, np.ndarray]:
  """About `config.data.batch_seconds` of noise, with random letter transcripts."""
  rate = config.features.sample_rate
  size = max(1, int(config.data.batch_seconds // utterance_seconds))
  size = -(-size // batch_multiple) * batch_multiple
  samples = int(utterance_seconds * rate)
  width = int(15 * utterance_seconds)
  rng = np.random.default_rng(0)
  return {
      'audio': rng.uniform(-0.5, 0.5, (size, samples)).astype(np.float32),
      'audio_lengths': np.full(size, samples, np.int32),
      'labels': rng.choice(np.asarray(vocab.LETTER_IDS), (size, width)).astype(np.int32),
      'label_paddings': np.zeros((size, width), np.float32),
      'weights': np.ones(size, np.float32),
  }


def main(argv):
  del argv
  config = default.get_config(_PRESET.value)
  frozen = ml_collections.FrozenConfigDict(config)
  mesh = parallel.make_mesh()
  batch = made_up_batch(config, _UTTERANCE_SECONDS.value, mesh.size)
  audio_seconds = batch['audio_lengths'].sum() / config.features.sample_rate
  device_batch = parallel.shard_batch(batch, mesh)
  state = train.jit_init_state(frozen, mesh)()

  start = time.perf_counter()
  step = train.jit_train_step(frozen, mesh).lower(state, device_batch).compile()
  compile_seconds = time.perf_counter() - start
  state, _ = jax.block_until_ready(step(state, device_batch))

  best = float('inf')
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      state, metrics = step(state, device_batch)
    jax.block_until_ready(metrics)
    best = min(best, (time.perf_counter() - start) / _STEPS.value)
  print(f'{_PRESET.value}: {len(batch["weights"])} x {_UTTERANCE_SECONDS.value:g} s per batch '
        f'on {mesh.size} {jax.devices()[0].platform} device(s); compile {compile_seconds:.1f} s; '
        f'{best:.2f} s per step = {audio_seconds / best:.0f} audio-seconds per second')


if __name__ == '__main__':
  app.run(main)
