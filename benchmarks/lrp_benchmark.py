"""LRP speed (SPEC §6): the fast form against the literal one, and LRP against sensitivity.

  python benchmarks/lrp_benchmark.py --config=paper --frames=16 --literal_frames=2

1. Layer 1 alone, where the paper counts "500 million local pre-activations" per frame:
   relevance of the input from that of the layer's output, fast (one transposed convolution)
   against literal (every z_ij materialized, position after position); same result?
2. The whole model on a batch of `--frames` windows (vmapped, each window's own VALID pass):
   LRP with the paper's rule against sensitivity; time per frame, frames per second, ratio.
3. LRP of `--frames` frames of one utterance from its shared SAME-padded pass (the pass
   included), as dataset-wide introspection runs it.

Compile time (first call minus a steady call) is reported apart from the steady state (median
of `--repeats` calls). Weights are random (`model.init_variables`) with batch statistics drawn
around their initial values; run time does not depend on them.
"""

import statistics
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from navai_jax.introspection import attribution
from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.configs import default
import common

_CONFIG = flags.DEFINE_enum('config', 'paper', default.PRESETS, 'Model preset.')
_FRAMES = flags.DEFINE_integer('frames', 16, 'Frames per batch (whole-model parts).')
_LITERAL_FRAMES = flags.DEFINE_integer('literal_frames', 2,
                                       'Frames for the layer-1 comparison (literal is heavy).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Steady-state calls; the median is reported.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of weights and inputs.')


def timed(fn, *args):
  """`(result, compile seconds, steady seconds)` of `fn(*args)`: the median of the repeats."""
  out, first, times = common.timed(lambda: fn(*args), _REPEATS.value)
  steady = statistics.median(times)
  return out, max(first - steady, 0.0), steady


def report(name, frames_n, compile_s, steady_s):
  print(f'  {name:<34} compile {compile_s:7.2f} s   steady {steady_s * 1e3 / frames_n:9.2f} '
        f'ms/frame   {frames_n / steady_s:9.1f} frames/s')


def main(argv):
  del argv
  config = default.get_config(_CONFIG.value)
  key_w, key_x = jax.random.split(jax.random.key(_SEED.value))
  variables = common.random_variables(config, key_w, _SEED.value)
  layers = network.layers_from_variables(config, variables)
  n, n_lit = _FRAMES.value, _LITERAL_FRAMES.value
  windows = jax.random.normal(key_x, (n, model.RECEPTIVE_FIELD, config.features.num_mels))
  print(f'Command: python {" ".join(sys.argv)}')
  print(f'Device: {jax.devices()[0].device_kind}; preset {config.preset}; '
        f'{n} frames per batch, {_REPEATS.value} steady calls (median).')

  # 1. Layer 1 alone, with the relevance that really reaches it (paper rule).
  per_layer = jax.jit(jax.vmap(lambda w: lrp.relevance(
      layers, *network.forward(layers, w), return_layers=True)[1][1]))(windows[:n_lit])
  z = jax.vmap(lambda w: network.forward(layers[:1], w)[1][0])(windows[:n_lit])
  first = layers[0]
  step = {form: jax.jit(jax.vmap(lambda layer, a, z, r, form=form: lrp.layer_relevance(
      layer, a, z, r, rule='paper', form=form), in_axes=(None, 0, 0, 0))) for form in lrp.FORMS}
  k, c, d = first.kernel_KxCxD.shape
  print(f'\n1. Layer 1 alone ({k}x{c} -> {d} x {z.shape[1]} positions: '
        f'{k * c * d * z.shape[1] / 1e6:.0f} M local pre-activations per frame), '
        f'{n_lit} frames:')
  results = {}
  for form in lrp.FORMS:
    results[form], compile_s, steady_s = timed(step[form], first, windows[:n_lit], z, per_layer)
    report(form, n_lit, compile_s, steady_s)
    results[form + '_s'] = steady_s
  difference = float(jnp.max(jnp.abs(results['fast'] - results['literal']))
                     / jnp.max(jnp.abs(results['literal'])))
  with jax.enable_x64(True):  # Same arithmetic in float64: the difference above is rounding.
    as64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    first64, window64, r64 = as64((first, windows[:1], per_layer[:1]))
    z64 = network.forward((first64,), window64[0])[1][0][None]
    fast64, literal64 = (step[form](first64, window64, z64, r64) for form in lrp.FORMS)
    difference64 = float(jnp.max(jnp.abs(fast64 - literal64)) / jnp.max(jnp.abs(literal64)))
  print(f'  literal / fast time: {results["literal_s"] / results["fast_s"]:.1f}x '
        f'(target >= 20x); max |fast - literal| / max |literal| = {difference:.1e} '
        f'(float32), {difference64:.1e} (float64, one frame)')

  # 2. Whole model, per-window passes.
  print(f'\n2. Whole model, {n} windows vmapped (own VALID pass each):')
  _, compile_s, lrp_s = timed(lambda w: lrp.lrp_batch(config, variables, w), windows)
  report('LRP (paper rule, fast)', n, compile_s, lrp_s)
  _, compile_s, sens_s = timed(
      lambda w: attribution.attribute('sensitivity', config, variables, w), windows)
  report('sensitivity (softmax)', n, compile_s, sens_s)
  print(f'  LRP / sensitivity time: {lrp_s / sens_s:.2f}x (target <= 1.5x)')

  # 3. Frames of one utterance from its shared pass.
  specs = model.layer_specs(config.model)
  length = model.RECEPTIVE_FIELD + 2 * 4 * n
  x = jax.random.normal(key_x, (1, length, config.features.num_mels))
  position_N = jnp.linspace(51, (length - 105) // 2, n).astype(jnp.int32)
  utterance_N = jnp.zeros(n, jnp.int32)
  assert int(model.window_start(specs, position_N[-1])) + 206 <= length

  @jax.jit
  def sliced(x):
    _, intermediates = model.apply_inference(config, variables, x)
    inputs, pre = frames.window_activations(config, x, intermediates, utterance_N, position_N)
    return jax.vmap(lambda i, p: lrp.relevance(layers, i, p))(inputs, pre)

  _, compile_s, sliced_s = timed(sliced, x)
  print(f'\n3. {n} frames of one {length}-frame utterance, sliced from its SAME pass:')
  report('LRP (paper rule, pass included)', n, compile_s, sliced_s)
  print(f'  sliced / per-window LRP time: {sliced_s / lrp_s:.2f}x')


if __name__ == '__main__':
  app.run(main)
