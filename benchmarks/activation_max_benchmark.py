"""Neurons per second of activation maximization: one vmapped run versus a loop over neurons.

  python benchmarks/activation_max_benchmark.py --preset=paper --layer=1 --steps=250

Optimizes all `--num_neurons` channels of `--layer` in one jitted, vmapped run, and
`--loop_neurons` of them one by one with the jitted single-neuron function (the loop's rate
per neuron is extrapolated to all of them). Both jitted functions are compiled ahead of time,
so compile time is reported on its own; each is called once before it is timed, and the
fastest of `--repeats` timed runs counts. The model has random weights; the cost of AM does
not depend on their values.
"""


from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from navai_jax.introspection import activation_max
from navai_jax.recognizer import model
from navai_jax.configs import default
import common

_PRESET = flags.DEFINE_enum('preset', 'paper', list(default.PRESETS), 'Model config preset.')
_LAYER = flags.DEFINE_integer('layer', 1, 'Layer whose neurons are optimized.')
_NUM_NEURONS = flags.DEFINE_integer('num_neurons', 0, 'Neurons in the vmapped run; 0 = all.')
_LOOP_NEURONS = flags.DEFINE_integer('loop_neurons', 8, 'Neurons optimized one by one.')
_STEPS = flags.DEFINE_integer('steps', 250, 'Adam steps per neuron (the paper: 250).')
_REPEATS = flags.DEFINE_integer('repeats', 1, 'Timed runs of each; the fastest is reported '
                                '(the machine may be shared).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 0,
                                   'Neurons side by side in the vmapped run; 0 = all at once.')

for _name in ('layer', 'loop_neurons', 'steps', 'repeats'):
  flags.register_validator(_name, lambda v: v >= 1, f'--{_name} must be >= 1.')
for _name in ('num_neurons', 'batch_size'):
  flags.register_validator(_name, lambda v: v >= 0, f'--{_name} must be >= 0.')


def main(argv):
  del argv
  config = default.get_config(_PRESET.value)
  variables = model.init_variables(config, jax.random.key(0))
  width = model.layer_specs(config.model)[_LAYER.value - 1].features
  channels = np.arange(_NUM_NEURONS.value or width)
  am = config.am
  am.steps = _STEPS.value
  batch_size = _BATCH_SIZE.value or None

  # Compiled ahead of time with the static arguments the public functions pass, so compile
  # time is measured on its own and the runs below time the same executables.
  # pylint: disable=protected-access
  static = activation_max._static_args(config, _LAYER.value, am)
  many_jit, one_jit = activation_max._maximize_many_jit, activation_max._maximize_one_jit
  # pylint: enable=protected-access
  channels_N = jnp.asarray(channels, jnp.int32)
  vmapped, compile_v, _ = common.timed(lambda: many_jit.lower(
      variables, channels_N, batch_size=batch_size, **static).compile())
  one, compile_one, _ = common.timed(lambda: one_jit.lower(variables, channels_N[0],
                                                           **static).compile())
  loop_channels = list(channels_N[:_LOOP_NEURONS.value])
  # The first call of each is a warm-up; the fastest of the repeats counts.
  run_v = min(common.timed(lambda: vmapped(variables, channels_N), _REPEATS.value)[2])
  run_l = min(common.timed(lambda: [one(variables, c) for c in loop_channels],
                           _REPEATS.value)[2])

  n, n_loop = len(channels), min(_LOOP_NEURONS.value, len(channels))
  per_neuron_loop = run_l / n_loop
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}; preset {_PRESET.value}, '
        f'layer {_LAYER.value} ({width} channels), {am.steps} steps')
  print(f'vmapped: {n} neurons in {run_v:.2f} s = {n / run_v:.2f} neurons/s '
        f'(batch_size {batch_size or n}); compile {compile_v:.2f} s')
  print(f'loop:    {n_loop} neurons in {run_l:.2f} s = {1 / per_neuron_loop:.2f} neurons/s; '
        f'all {n} extrapolated: {n * per_neuron_loop:.1f} s; compile {compile_one:.2f} s')
  print(f'speed-up of vmapped over loop: {n * per_neuron_loop / run_v:.1f}x')
  print('rerun: python benchmarks/activation_max_benchmark.py '
        f'--preset={_PRESET.value} --layer={_LAYER.value} --num_neurons={n} '
        f'--loop_neurons={n_loop} --steps={am.steps} --batch_size={_BATCH_SIZE.value} '
        f'--repeats={_REPEATS.value}')


if __name__ == '__main__':
  app.run(main)
