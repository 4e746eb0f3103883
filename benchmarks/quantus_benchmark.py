"""Our attribution metrics against Quantus on the same maps: the same numbers, and the speed.

  pip install -r benchmarks/requirements.txt   # torch and quantus, beside requirements.txt
  python benchmarks/quantus_benchmark.py --preset=small --frames=32 --samples=10

Quantus runs on the PyTorch port of the network (`torch_wav2letter.py`, the same weights); a
`[206, F]` window is a one-channel image `[1, 206, F]` for Quantus, which a small wrapper
module turns into the port's `[F, 206]` input and whose output is the logits of the window's
one output position. Both sides get the same windows, targets and maps (our sensitivity of
the softmax output), the same true-span masks (a band of columns per frame, as the letter's
true span gives it) and, for max-sensitivity, the same noise: Quantus's perturbation function
returns our draws, and its explanation function is our map.

| ours | Quantus 0.6 | settings |
|---|---|---|
| `perturbation_curve(deletion, morf, bin, step=1/16)` | `PixelFlipping` | 1/16 of the values per step, baseline 0, softmax scores; Quantus's curve starts after the first step |
| `max_sensitivity` | `MaxSensitivity` | `--samples` draws, U[-0.2, 0.2], Frobenius norms |
| `gini` | `Sparseness` | abs |
| `localisation` 'mass', 'rank' | `RelevanceMassAccuracy`, `RelevanceRankAccuracy` | abs |
| `localisation` 'pointing' | `PointingGame` | signed maximum |

Prints, per metric, the largest difference between the two over the frames and both sides'
frames per second (wall time of the metric over all frames, maps given; ours jitted, its
first call excluded; Quantus as its `__call__` runs, batch size = all frames).
"""

import importlib.metadata
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_wav2letter  # pylint: disable=g-import-not-at-top,wrong-import-position

from navai_jax import attribution  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax import attribution_metrics as am  # pylint: disable=wrong-import-position
from navai_jax import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax import model  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax import network  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.configs import default  # pylint: disable=wrong-import-position

_PRESET = flags.DEFINE_enum('preset', 'small', ['tiny', 'small', 'paper'], 'Config preset.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run; default: letter-biased random '
                               'weights of --preset.')
_FRAMES = flags.DEFINE_integer('frames', 32, 'Windows (random normal, as z-normalized input).')
_SAMPLES = flags.DEFINE_integer('samples', 10, 'Max-sensitivity noise draws per frame.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of windows, masks and noise.')


def main(argv):
  del argv
  import quantus  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  if _WORKDIR.value:
    config, variables, _ = checkpoints.load_for_inference(_WORKDIR.value)
  else:
    config = default.get_config(_PRESET.value)
    variables = common.letter_variables(config)
  layers = network.layers_from_variables(config, variables)
  n, w, f = _FRAMES.value, model.RECEPTIVE_FIELD, config.features.num_mels
  keys = jax.random.split(jax.random.key(_SEED.value), 4)
  windows = np.asarray(jax.random.normal(keys[0], (n, w, f)), np.float32)
  logits = np.asarray(jax.vmap(lambda x: network.logits(layers, x))(windows))
  targets = logits.argmax(-1)
  maps = np.asarray(attribution.attribute_layers('sensitivity', layers, windows, targets))
  starts = np.asarray(jax.random.randint(keys[1], (n,), 20, w - 40))
  inside = (np.arange(w)[None] >= starts[:, None]) & (np.arange(w)[None] < starts[:, None] + 12)
  noise = np.asarray(jax.random.uniform(keys[2], (n, _SAMPLES.value, w, f), jnp.float32,
                                        -0.2, 0.2))

  port = torch_wav2letter.wav2letter(config, variables, padding='VALID')

  class Window(torch.nn.Module):
    """[N, 1, 206, F] windows -> [N, V] logits of the port."""

    def __init__(self):
      super().__init__()
      self.port = port

    def forward(self, x):
      return self.port(x[:, 0].transpose(1, 2))[:, :, 0]

  net = Window().eval()
  x_q, a_q = windows[:, None], maps[:, None]
  s_q = np.broadcast_to(inside[:, None, :, None], x_q.shape).astype(np.float32)
  print(f'Command: python {" ".join(sys.argv)}')
  print(f'quantus {importlib.metadata.version("quantus")}, torch {torch.__version__} '
        f'({torch.get_num_threads()} threads), jax {jax.__version__} on '
        f'{jax.devices()[0].device_kind}; preset {config.preset}, {n} frames of {w} x {f}, '
        f'load average {os.getloadavg()[0]:.1f}')

  rows = []

  def compare(name, ours_fn, quantus_fn):
    """`ours_fn(windows, targets, maps, inside, noise)`, jitted; `quantus_fn()`."""
    ours_jit = jax.jit(ours_fn)
    args = (windows, targets, maps, inside, noise)
    ours = np.asarray(jax.block_until_ready(ours_jit(*args)))
    start = time.perf_counter()
    ours = np.asarray(jax.block_until_ready(ours_jit(*args)))
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = np.asarray(quantus_fn(), np.float64)
    theirs_s = time.perf_counter() - start
    difference = float(np.nanmax(np.abs(ours.reshape(theirs.shape) - theirs)))
    rows.append((name, difference, n / ours_s, n / theirs_s))
    print(f'{name:28s} max |ours - Quantus| {difference:.1e}; frames/s ours {n / ours_s:10.1f}, '
          f'Quantus {n / theirs_s:8.2f}: {theirs_s / ours_s:7.1f}x', flush=True)

  score = lambda x, t: am.window_probability(layers, x, t)
  step = 1 / 16
  compare('pixel flipping (deletion)',
          lambda windows, targets, maps, *_: jax.vmap(lambda x, t, m: am.perturbation_curve(
              score, x, t, m, mode='deletion', order='morf', granularity='bin', step=step)[1:])(
                  windows, targets, maps),
          lambda: quantus.PixelFlipping(features_in_step=w * f // 16, perturb_baseline=0.0,
                                        disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, device='cpu', softmax=True, batch_size=n))
  compare('sparseness (Gini)', lambda windows, targets, maps, *_: jax.vmap(am.gini)(maps),
          lambda: quantus.Sparseness(disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, device='cpu', batch_size=n))
  local = lambda key: (lambda _, __, maps, inside, ___: jax.vmap(am.localisation)(
      maps, inside)[key])
  compare('relevance mass accuracy', local('mass'),
          lambda: quantus.RelevanceMassAccuracy(abs=True, disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, s_batch=s_q, device='cpu', batch_size=n))
  compare('relevance rank accuracy', local('rank'),
          lambda: quantus.RelevanceRankAccuracy(abs=True, disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, s_batch=s_q, device='cpu', batch_size=n))
  compare('pointing game', local('pointing'),
          lambda: quantus.PointingGame(disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, s_batch=s_q, device='cpu', batch_size=n))

  # Max-sensitivity: the same noise on both sides, our map as the explanation.
  explain = jax.jit(jax.vmap(lambda x, t: attribution.sensitivity_map(layers, x, t)))
  draws = iter([])

  def our_noise(arr, indices=None, indexed_axes=None, **kwargs):
    del indices, indexed_axes, kwargs
    return arr + next(draws).reshape(arr.shape)

  def our_explanation(model, inputs, targets, **kwargs):
    del model, kwargs
    return np.asarray(explain(np.asarray(inputs)[:, 0], np.asarray(targets)))[:, None]

  def quantus_max_sensitivity():
    nonlocal draws
    draws = iter(noise.transpose(1, 0, 2, 3)[:, :, None])
    return quantus.MaxSensitivity(nr_samples=_SAMPLES.value, perturb_func=our_noise,
                                  normalise=False, abs=False, disable_warnings=True,
                                  return_nan_when_prediction_changes=False)(
        net, x_q, targets, a_batch=a_q, explain_func=our_explanation, device='cpu',
        batch_size=n)

  sensitivity = lambda x, t: attribution.sensitivity_map(layers, x, t)
  compare('max-sensitivity',
          lambda windows, targets, _, __, noise: jax.vmap(
              lambda x, t, d: am.max_sensitivity_of_noise(sensitivity, x, t, d))(
                  windows, targets, noise), quantus_max_sensitivity)
  slowest = min(r[3] / r[2] for r in rows)
  print(f'Ours is {1 / max(r[3] / r[2] for r in rows):.1f}x to {1 / slowest:.1f}x Quantus\'s '
        'frames per second.')


if __name__ == '__main__':
  app.run(main)
