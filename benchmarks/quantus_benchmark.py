"""Our attribution metrics against Quantus on the same maps: the same numbers, and the speed.

  pip install -r benchmarks/requirements.txt   # torch and quantus, beside requirements.txt
  python benchmarks/quantus_benchmark.py --preset=small --frames=32 --samples=10 --regions=64

Quantus runs on the PyTorch port of the network (`torch_wav2letter.py`, the same weights); a
`[206, F]` window is a one-channel image `[1, 206, F]` for Quantus, which a small wrapper
module turns into the port's `[F, 206]` input and whose output is the logits of the window's
one output position. Both sides get the same windows, targets and maps (our sensitivity of
the softmax output), the same true-span masks (a band of columns per frame, as the letter's
true span gives it) and, for max-sensitivity, the same noise: Quantus's perturbation function
returns our draws, and its explanation function is our map. The metrics that make maps of
their own (max-sensitivity, random logit, MPRT) take the given map as the reference on both
sides (Quantus's `a_batch`, our `map_WxF`).

| ours | Quantus 0.6 | settings |
|---|---|---|
| `perturbation_curve(deletion, morf, bin, step=1/16)` | `PixelFlipping` | 1/16 of the values per step, baseline 0, softmax scores; Quantus's curve starts after the first step |
| `max_sensitivity` | `MaxSensitivity` | `--samples` draws, U[-0.2, 0.2], Frobenius norms |
| `gini` | `Sparseness` | abs |
| `localisation` 'mass', 'rank' | `RelevanceMassAccuracy`, `RelevanceRankAccuracy` | abs |
| `localisation` 'pointing' | `PointingGame` | signed maximum |
| `perturbation_curve(deletion, morf, patch, step=1/patches, max_steps=R + 1)` | `RegionPerturbation` | `--regions` patches of `--patch` x `--patch`, one per step, baseline 0, softmax scores; Quantus's drop from the unperturbed input |
| `random_logit` | `RandomLogit` | Spearman; Quantus's other classes (NumPy, seed 42) given to ours for the numbers |
| `cascading_randomisation` | `MPRT` | Spearman, top-down; Quantus's re-initialized weights read into ours for the numbers; speed as maps per second (its 23 stages, our 12) |

Prints, per metric, the largest difference between the two over the frames and both sides'
frames per second (wall time of the metric over all frames, maps given; ours jitted, its
first call excluded; Quantus as its `__call__` runs, batch size = all frames). Then where
MPRT's time per map goes (the map, its ranking, XLA's sort of the keys alone and with their
positions as a payload), and the ceiling our forward pass sets for the perturbation curves.
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

from navai_jax.introspection import attribution  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.faithfulness import metrics  # pylint: disable=wrong-import-position
from navai_jax.training import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.recognizer import model  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.recognizer import network  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.configs import default  # pylint: disable=wrong-import-position

_PRESET = flags.DEFINE_enum('preset', 'small', ['tiny', 'small', 'paper'], 'Config preset.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run; default: letter-biased random '
                               'weights of --preset.')
_FRAMES = flags.DEFINE_integer('frames', 32, 'Windows (random normal, as z-normalized input).')
_SAMPLES = flags.DEFINE_integer('samples', 10, 'Max-sensitivity noise draws per frame.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of windows, masks and noise.')
_REGIONS = flags.DEFINE_integer('regions', 64, 'Patches removed, one per step, by region '
                                'perturbation.')
_PATCH = flags.DEFINE_integer('patch', 2, 'Patch side of region perturbation (frames and bins).')


def layers_of_port(port, like: network.Layers) -> network.Layers:
  """Our layers with the weights of the PyTorch port (`torch_wav2letter.wav2letter`, VALID):
  each Conv1d's kernel, bias and the batch norm after it, as Quantus left them."""
  import torch  # pylint: disable=g-import-not-at-top
  convs = [m for m in port if isinstance(m, torch.nn.Conv1d)]
  norms = {i: m for i, m in enumerate(port) if isinstance(m, torch.nn.BatchNorm1d)}
  after = [i for i, m in enumerate(port) if isinstance(m, torch.nn.Conv1d)]
  out = []
  for layer, conv, i in zip(like, convs, after):
    value = lambda t: np.array(t.detach().numpy(), np.float32)  # a copy: Quantus resets in place
    bn = norms.get(i + 1)
    out.append(network.Layer(
        value(conv.weight).transpose(2, 1, 0),
        None if conv.bias is None else value(conv.bias),
        None if bn is None else {'scale': value(bn.weight), 'bias': value(bn.bias),
                                 'mean': value(bn.running_mean), 'var': value(bn.running_var)},
        layer.stride, layer.bn_epsilon))
  return tuple(out)


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

  def record(name, difference, ours_rate, theirs_rate, unit='frames'):
    rows.append((name, difference, ours_rate, theirs_rate))
    print(f'{name:36s} max |ours - Quantus| {difference:.1e}; {unit}/s ours {ours_rate:10.1f}, '
          f'Quantus {theirs_rate:8.2f}: {ours_rate / theirs_rate:7.1f}x', flush=True)

  def timed(ours_fn):
    """Seconds of `ours_fn(windows, targets, maps, inside, noise)`, jitted, after its first
    call; and its result."""
    ours_jit = jax.jit(ours_fn)
    args = (windows, targets, maps, inside, noise)
    jax.block_until_ready(ours_jit(*args))
    start = time.perf_counter()
    ours = np.asarray(jax.block_until_ready(ours_jit(*args)))
    return time.perf_counter() - start, ours

  def compare(name, ours_fn, quantus_fn, ours_values=None):
    """`ours_fn(windows, targets, maps, inside, noise)`, jitted, timed and compared with
    `quantus_fn()`; where given, `ours_values` are compared instead of its result."""
    ours_s, ours = timed(ours_fn)
    ours = ours if ours_values is None else np.asarray(ours_values)
    start = time.perf_counter()
    theirs = np.asarray(quantus_fn(), np.float64)
    theirs_s = time.perf_counter() - start
    record(name, float(np.nanmax(np.abs(ours.reshape(theirs.shape) - theirs))), n / ours_s,
           n / theirs_s)

  score = lambda x, t: metrics.window_probability(layers, x, t)
  step = 1 / 16
  compare('pixel flipping (deletion)',
          lambda windows, targets, maps, *_: jax.vmap(lambda x, t, m: metrics.perturbation_curve(
              score, x, t, m, mode='deletion', order='morf', granularity='bin', step=step)[1:])(
                  windows, targets, maps),
          lambda: quantus.PixelFlipping(features_in_step=w * f // 16, perturb_baseline=0.0,
                                        disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, device='cpu', softmax=True, batch_size=n))
  # The sorting metrics run as the attribution evaluation runs them: one piece per core.
  cores = min(os.cpu_count() or 1, 4)
  compare('sparseness (Gini)',
          lambda windows, targets, maps, *_: metrics.vmap_in_parts(metrics.gini, cores)(maps),
          lambda: quantus.Sparseness(disable_warnings=True)(
              net, x_q, targets, a_batch=a_q, device='cpu', batch_size=n))
  local = lambda key: (lambda _, __, maps, inside, ___: metrics.vmap_in_parts(
      metrics.localisation, cores)(maps, inside)[key])
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
          lambda windows, targets, maps, _, noise: jax.vmap(
              lambda x, t, d, m: metrics.max_sensitivity_of_noise(sensitivity, x, t, d, map_WxF=m))(
                  windows, targets, noise, maps), quantus_max_sensitivity)
  # Region perturbation: patches removed one per step, most relevant first. Quantus pads a
  # side that the patch does not divide on both ends, so its patches are shifted against ours
  # (which start at 0 and end with a smaller one); `--patch` 2 divides the window's 206
  # frames and the mel bins, so both cut the same patches. Quantus scores the drop from the
  # unperturbed input, ours the curve itself.
  patch = _PATCH.value
  patches = -(-w // patch) * -(-f // patch)
  regions = min(_REGIONS.value, patches)
  compare(f'region perturbation ({regions} {patch}x{patch} patches)',
          lambda windows, targets, maps, *_: jax.vmap(lambda x, t, m: (lambda c: c[0] - c[1:])(
              metrics.perturbation_curve(score, x, t, m, mode='deletion', order='morf',
                                    granularity='patch', patch=patch, step=1 / patches,
                                    max_steps=regions + 1)))(windows, targets, maps),
          lambda: quantus.RegionPerturbation(
              patch_size=patch, order='morf', regions_evaluation=regions, normalise=False,
              abs=False, perturb_baseline=0.0, disable_warnings=True)(
                  net, x_q, targets, a_batch=a_q, device='cpu', softmax=True, batch_size=n))

  # Random logit: Quantus draws the other class with NumPy (seed 42), so its classes are taken
  # here as it draws them and given to ours; the speed is our metric as it runs (own draw).
  vocab_size = logits.shape[-1]
  rng = np.random.RandomState(42)
  picks = rng.randint(0, vocab_size - 1, n)
  others = np.array([[c for c in range(vocab_size) if c != t][k] for t, k in zip(targets, picks)])
  spearman_q = quantus.similarity_func.correlation_spearman
  compare('random logit',
          lambda windows, targets, maps, *_: jax.vmap(
              lambda x, t, k, m: metrics.random_logit(sensitivity, x, t, vocab_size, k, map_WxF=m))(
                  windows, targets, jax.random.split(keys[3], n), maps),
          lambda: quantus.RandomLogit(
              similarity_func=spearman_q, num_classes=vocab_size, seed=42, abs=False,
              normalise=False, disable_warnings=True)(
                  net, x_q, targets, a_batch=a_q, explain_func=our_explanation, device='cpu',
                  batch_size=n),
          ours_values=jax.vmap(lambda x, t, o: metrics.spearman(
              sensitivity(x, t), sensitivity(x, o)))(windows, targets, others))

  # MPRT: Quantus re-initializes the port's modules from the top (each convolution and batch
  # norm a stage of its own, PyTorch's initializers) and explains with our map on the
  # randomized weights, which ours then reads back into its own layers for the same numbers.
  # The speed is ours as it runs (`cascading_randomisation`: a layer's kernel and batch norm
  # at once, 12 stages) against Quantus's (23 stages), counted in maps made per second.
  seen = []

  def our_explanation_of_model(model, inputs, targets, **kwargs):
    del kwargs
    randomized = layers_of_port(model.port, layers)
    seen.append(randomized)
    return np.asarray(explain_with(randomized, np.asarray(inputs)[:, 0],
                                   np.asarray(targets)))[:, None]

  explain_with = jax.jit(jax.vmap(lambda l, x, t: attribution.sensitivity_map(l, x, t),
                                  in_axes=(None, 0, 0)))
  start = time.perf_counter()
  theirs = quantus.MPRT(similarity_func=spearman_q, layer_order='top_down', abs=False,
                        normalise=False, disable_warnings=True)(
      net, x_q, targets, a_batch=a_q, explain_func=our_explanation_of_model, device='cpu',
      batch_size=n)
  theirs_s = time.perf_counter() - start
  stages = [k for k in theirs if k != 'original']
  theirs_values = np.array([theirs[k] for k in ['original'] + stages])
  ours_values = np.array([np.asarray(jax.vmap(metrics.spearman)(maps, explain_with(l, windows,
                                                                             targets)))
                          for l in seen])
  cascade = jax.jit(jax.vmap(lambda x, t, m: metrics.cascading_randomisation(
      attribution.sensitivity_map, layers, x, t, keys[3], map_WxF=m)))
  jax.block_until_ready(cascade(windows, targets, maps))
  start = time.perf_counter()
  jax.block_until_ready(cascade(windows, targets, maps))
  ours_s = time.perf_counter() - start
  # Maps made: ours one per stage (the trained map is given); Quantus's one per stage and one
  # of the trained network (its explanation function is called once more, `seen`).
  ours_maps, theirs_maps = n * len(layers), n * len(seen)
  record(f'MPRT ({len(stages)} vs {len(layers)} stages)',
         float(np.nanmax(np.abs(ours_values - theirs_values))), ours_maps / ours_s,
         theirs_maps / theirs_s, 'maps')
  # Where MPRT's time per map goes: the map (as the cascade makes it, the frames in one batch)
  # and the ranking of its 26,368 values against the trained map's ranks; and the two sorts
  # the ranking could be made of (our keys alone, keys with their positions as a payload).
  def per_map_ms(fn, *args):
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / n * 1e3

  ranks = jax.vmap(metrics.centred_ranks)(maps)
  keys_of = jax.vmap(lambda m: metrics._order_keys(m.reshape(-1)))  # pylint: disable=protected-access
  parts = {
      'the map': per_map_ms(lambda x, t: explain_with(layers, x, t), windows, targets),
      'its ranking (Spearman against the trained map\'s ranks)': per_map_ms(
          jax.vmap(metrics.spearman_of_ranks), ranks, maps[::-1]),
      'XLA\'s sort of its 32-bit keys alone': per_map_ms(
          lambda m: jax.vmap(jax.lax.sort)(keys_of(m)), maps),
      'XLA\'s sort of the keys with their positions': per_map_ms(
          lambda m: jax.vmap(lambda k: jax.lax.sort((k, jnp.arange(k.shape[0])), num_keys=1))(
              keys_of(m)), maps)}
  print('MPRT per map, ms: ' + '; '.join(f'{k} {v:.2f}' for k, v in parts.items()))
  # The perturbation curves are forward passes: their frames per second cannot pass the rate
  # at which the network scores windows, measured here on as many windows as they score.
  forward = jax.jit(jax.vmap(lambda x: network.logits(layers, x)))
  many = np.concatenate([windows] * 16)
  jax.block_until_ready(forward(many))
  rates = []
  for _ in range(5):  # A shared machine moves a single timing a lot: the best of five.
    start = time.perf_counter()
    jax.block_until_ready(forward(many))
    rates.append(len(many) / (time.perf_counter() - start))
  per_s = max(rates)
  print(f'Our forward pass: {per_s:.0f} windows/s, best of 5 ({min(rates):.0f}-{per_s:.0f}).')
  for name, passes in (('pixel flipping (deletion)', len(metrics.fractions(step))),
                       (f'region perturbation ({regions} {patch}x{patch} patches)', regions + 1)):
    theirs_rate = next(r[3] for r in rows if r[0] == name)
    print(f'{name}: {passes} forward passes per frame; at the {per_s:.0f} windows/s of our '
          f'forward pass here that is at most {per_s / passes:.1f} frames/s, '
          f'{per_s / passes / theirs_rate:.1f}x Quantus\'s.')
  slowest = min(r[3] / r[2] for r in rows)
  print(f'Ours is {1 / max(r[3] / r[2] for r in rows):.1f}x to {1 / slowest:.1f}x Quantus\'s '
        'frames per second.')


if __name__ == '__main__':
  app.run(main)
