"""The attribution-evaluation suite on a trained run: every method, every metric, one table.

`evaluate_attributions(config, variables)` takes the frames of `config.attributions.split`
(SPEC §4; at most `max_frames` of them, evenly spaced over `max_utterances` evenly spaced
utterances, `sampling`), makes each method's maps, and scores them with `metrics`:

* deletion and insertion curves (MoRF, LeRF; units: bins, time columns, patches), their AUC
  and AOPC; the random order once, as the reference every method is held against;
* cascading model-parameter randomisation (Spearman per randomized layer), random logit;
* max-sensitivity;
* localisation against the letter's true span (corpora with `.timing.json` files only:
  elsewhere these metrics are skipped and the result says so);
* Gini sparseness;
* utterance-level deletion (SPES): the top p% of an utterance's summed relevance set to 0,
  the utterance decoded again, LER against p.

Every per-frame number is kept, so the table's means come with 95% confidence intervals
(normal approximation, 1.96 standard errors) over frames.
"""

import concurrent.futures
import functools
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.introspection import attribution
from navai_jax.core import rules
from navai_jax.faithfulness import metrics
from navai_jax.faithfulness import sampling
from navai_jax.training import error_rates
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any

# Method name -> (attribution.METHODS entry, options). 'random' is the random-map baseline.
METHODS: dict[str, Optional[tuple[str, dict[str, Any]]]] = {
    'sensitivity': ('sensitivity', {'output': 'softmax'}),
    'sensitivity_logit': ('sensitivity', {'output': 'logit'}),
    'gradient_x_input': ('gradient_x_input', {}),
    'integrated_gradients': ('integrated_gradients', {}),
    'smoothgrad': ('smoothgrad', {}),
    'guided_backprop': ('guided_backprop', {}),
    'grad_cam': ('grad_cam', {}),
    'lrp_paper': ('lrp', {'rule': 'paper'}),
    'lrp_zero': ('lrp', {'rule': 'zero'}),
    'lrp_epsilon': ('lrp', {'rule': 'epsilon'}),
    'lrp_zplus': ('lrp', {'rule': 'zplus'}),
    'lrp_alphabeta': ('lrp', {'rule': 'alphabeta'}),
    'random': None,
}
METRICS = ('deletion', 'insertion', 'randomisation', 'random_logit', 'max_sensitivity',
           'localisation', 'sparseness', 'utterance_deletion')
BASELINES = ('zero', 'bin_mean')
RULES = {'attributions': [
    ('split', bool, 'a split name'),
    ('methods', *rules.subset_of(METHODS)), ('metrics', *rules.subset_of(METRICS)),
    ('granularities', *rules.subset_of(metrics.GRANULARITIES)),
    ('step', lambda v: 0 < v <= 1, 'a fraction of the units in (0, 1]'),
    ('baseline', *rules.one_of(BASELINES)),
    ('max_frames', *rules.at_least(1)), ('max_utterances', *rules.at_least(0)),
    ('patch', *rules.at_least(1)), ('max_sensitivity_samples', *rules.at_least(1)),
    ('max_sensitivity_radius', *rules.POSITIVE),
    ('utterance_fractions', lambda v: all(0 <= p < 1 for p in v), 'fractions in [0, 1)'),
    ('utterance_count', *rules.at_least(0)), ('frame_batch', *rules.at_least(1)),
    ('seed', *rules.at_least(0)),
]}
# Methods scored at the same time (`evaluate_attributions`).
_THREADS = 2


def explain_function(name: str, seed: int = 0) -> Callable[[network.Layers, Array, Array], Array]:
  """`explain(layers, x_WxF, target) -> map_WxF` of a method of METHODS (not 'random')."""
  method, options = METHODS[name]
  fn = attribution.METHODS[method]
  if method == 'smoothgrad':
    key = jax.random.key(seed)
    return lambda layers, x, t: fn(layers, x, t, key=key, **options)
  return lambda layers, x, t: fn(layers, x, t, **options)


def _in_chunks(fn, arrays, size):
  """`fn` over the leading axis of `arrays` in chunks of `size` (the last one padded)."""
  n = len(arrays[0])
  pieces = []
  for start in range(0, n, size):
    part = [a[start:start + size] for a in arrays]
    pad = size - len(part[0])
    if pad:
      part = [np.concatenate([p, np.repeat(p[:1], pad, 0)]) for p in part]
    pieces.append(jax.tree.map(lambda r, k=size - pad: np.asarray(r)[:k], fn(*part)))
  return jax.tree.map(lambda *p: np.concatenate(p), *pieces)


@functools.lru_cache(maxsize=8)
def _curves_function(granularities: tuple[str, ...], modes: tuple[str, ...],
                     orders: tuple[str, ...], step: float, patch: int):
  """jit: (layers, windows, targets, maps, baseline, keys) -> {'gran/mode/order': [N, S]}."""
  def run(layers, windows, targets, maps, baseline, keys):
    score = functools.partial(metrics.window_probability, layers)
    out = {}
    for granularity in granularities:
      for mode in modes:
        for order in orders:
          curve = functools.partial(metrics.perturbation_curve, score, mode=mode, order=order,
                                    granularity=granularity, step=step, patch=patch,
                                    baseline_WxF=baseline)
          out[f'{granularity}/{mode}/{order}'] = jax.vmap(
              lambda x, t, m, k: curve(x, t, m, key=k))(windows, targets, maps, keys)
    return out
  return jax.jit(run)


def _network_key(seed: int) -> Array:
  return jax.random.fold_in(jax.random.key(seed), 1)


def _frame_metric_keys(frame_key: Array) -> tuple[Array, Array]:
  """(random logit's key, max-sensitivity's key) of one frame's key."""
  _, random_logit, max_sensitivity = jax.random.split(frame_key, 3)
  return random_logit, max_sensitivity


def metric_keys(seed: int, num_frames: int) -> dict[str, Array]:
  """The random keys of the suite: 'frames' `[N]` (each frame's removal order and the two
  below), 'random_logit' and 'max_sensitivity' `[N]` (the other class, the noise draws) and
  'network' (the one randomized network of the cascading randomisation)."""
  frames_N = jax.random.split(jax.random.key(seed), num_frames)
  random_logit, max_sensitivity = jax.vmap(_frame_metric_keys)(frames_N)
  return {'frames': frames_N, 'random_logit': random_logit, 'max_sensitivity': max_sensitivity,
          'network': _network_key(seed)}


@functools.lru_cache(maxsize=32)
def _network_metrics_function(name: str, metric_names: tuple[str, ...], samples: int,
                              radius: float, seed: int):
  """jit: (layers, fresh, windows, targets, keys, maps) -> per frame what re-runs the method:
  the maps on the randomized networks ('randomisation', `[L, W, F]`), the map of another class
  ('random_logit', `[W, F]`) and max-sensitivity. `maps` are the method's maps of the frames,
  made once for every metric; `fresh` the re-initialized layers (`metrics.fresh_layers`), drawn
  once for every method. Their rank correlations are `_correlations`'s, one program for every
  method (compiling its sorts takes longer than compiling a method's map)."""
  explain = explain_function(name, seed)

  def one(layers, fresh, x, target, key, map_):
    k2, k3 = _frame_metric_keys(key)
    out = {}
    if 'randomisation' in metric_names:
      out['randomisation'] = metrics.randomized_maps(explain, layers, x, target, fresh)
    if 'random_logit' in metric_names:
      out['random_logit'] = explain(layers, x, metrics.other_class(k2, target, vocab.SIZE))
    if 'max_sensitivity' in metric_names:
      out['max_sensitivity'] = metrics.max_sensitivity(functools.partial(explain, layers), x,
                                                  target, k3, samples=samples, radius=radius,
                                                  map_WxF=map_)
    return out

  return jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0)))


@jax.jit
@jax.vmap
def _correlations(map_WxF: Array, made: dict[str, Array]) -> dict[str, Array]:
  """The network metrics of `_network_metrics_function`'s maps, per frame: cascading
  randomisation (one per stage) and random logit as Spearman correlations with `map_WxF`,
  whose ranks are made once for both."""
  out = dict(made)
  ranks = metrics.centred_ranks(map_WxF)
  if 'randomisation' in made:
    out['randomisation'] = metrics.randomisation_of_ranks(ranks, made['randomisation'])
  if 'random_logit' in made:
    out['random_logit'] = metrics.spearman_of_ranks(ranks, made['random_logit'])
  return out


def _sort_pieces() -> int:
  """Pieces the sorting metrics of a batch are cut into (`metrics.vmap_in_parts`): one per core on
  a CPU (at most 4, each a copy of the program to compile), one elsewhere."""
  return min(os.cpu_count() or 1, 4) if jax.default_backend() == 'cpu' else 1


@functools.lru_cache(maxsize=4)
def _map_metrics_function(pieces: int):
  """jit: (maps, inside) -> Gini and the localisation metrics of every frame."""
  def run(maps, inside):
    local = metrics.vmap_in_parts(metrics.localisation, pieces)(maps, inside)
    return dict(sparseness=metrics.vmap_in_parts(metrics.gini, pieces)(maps),
                **{f'localisation/{k}': v for k, v in local.items()})
  return jax.jit(run)


def make_maps(name: str, layers: network.Layers, windows: np.ndarray, targets: np.ndarray,
              seed: int, chunk: int) -> np.ndarray:
  """The maps `[N, W, F]` of one method (the random baseline: uniform values in [0, 1))."""
  if METHODS[name] is None:
    return np.asarray(jax.random.uniform(jax.random.key(seed + 1), windows.shape))
  explain = explain_function(name, seed)
  fn = jax.jit(jax.vmap(lambda x, t: explain(layers, x, t)))
  return _in_chunks(fn, (windows, targets), chunk)


@functools.lru_cache(maxsize=4)
def _decoder(config: ml_collections.FrozenConfigDict):
  """jit: (variables, x_PxTxF, frames) -> arg-max tokens `[P, U]` of the utterance's pass."""
  return jax.jit(lambda variables, x, n: jnp.argmax(model.apply_inference(
      config, variables, x, frames_B=jnp.full(x.shape[:1], n))[0], -1))


# Utterances are padded to a multiple of this many frames for the decoder (fewer compiles).
_PAD_FRAMES = 128


def _utterance_deletion(config, variables, found, maps, fractions, count, seed):
  """LER against the deleted fraction of the summed relevance of `count` utterances (SPES).

  Per utterance, the maps of its evaluated frames are added at their windows' places into one
  `[T, F]` relevance; the top p of its values (signed, largest first) are set to 0, the
  utterance is decoded again, and its letter errors against the transcript are counted.
  `maps=None` deletes in random order. Each utterance is padded with zeros to a multiple of
  128 frames and decoded over its own length.
  """
  specs = model.layer_specs(config.model)
  decode = _decoder(ml_collections.FrozenConfigDict(config))
  errors, letters = np.zeros(len(fractions)), 0
  rng = np.random.default_rng(seed)
  for x_TxF, n, text, rows in [u for u in found.utterances if u[3]][:count]:
    if maps is None:
      total = rng.random(x_TxF.shape)
    else:
      total = np.zeros_like(x_TxF)
      for r in rows:
        start = int(model.window_start(specs, int(found.positions_N[r])))
        total[start:start + model.RECEPTIVE_FIELD] += maps[r]
    order = np.argsort(-total.reshape(-1), kind='stable')
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    padded = -(-n // _PAD_FRAMES) * _PAD_FRAMES
    inputs = np.zeros((len(fractions), padded, x_TxF.shape[1]), np.float32)
    inputs[:, :n] = [np.where(rank.reshape(total.shape) < round(p * total.size), 0.0, x_TxF)
                     for p in fractions]
    tokens = np.asarray(decode(variables, inputs, n))[:, :int(model.output_length(specs, n))]
    for k, best in enumerate(tokens):
      errors[k] += error_rates.edit_distance(text, vocab.transcript(vocab.ctc_collapse(best)))
    letters += len(text)
  return errors / max(letters, 1)


def evaluate_attributions(config: ml_collections.ConfigDict, variables: PyTree,
             progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
  """Every metric of `config.attributions.metrics` for every method of `.methods`.

  Returns a dict with 'frames' (how many), 'timed_frames' (with a true span), 'settings',
  'fractions' (the removed fractions of the curves), 'per_frame' {method: {metric: [N] or
  [N, S] or [N, L + 1]}}, 'random_order' {granularity/mode: [N, S]} (the curves of random
  removal order, the same for every method), 'utterance_deletion' {method: [P] LER} and
  'notes' (metrics skipped and why).
  """
  s = config.attributions
  rules.check_section('attributions', s, RULES)
  layers = network.layers_from_variables(config, variables)
  found = sampling.collect_frames(config, variables)
  n = len(found.targets_N)
  keys = np.asarray(jax.random.key_data(metric_keys(s.seed, n)['frames']))
  baseline = (np.zeros(found.windows_NxWxF.shape[1:], np.float32) if s.baseline == 'zero' else
              np.broadcast_to(found.windows_NxWxF.mean((0, 1)), found.windows_NxWxF.shape[1:]))
  wants = set(s.metrics)
  notes = []
  if 'localisation' in wants and not found.has_span_N.any():
    notes.append('localisation skipped: ' + (
        "no evaluated frame's letter aligns to a spoken letter of its transcript"
        if found.timed else 'the corpus has no .timing.json files with true letter times '
        '(e.g. real LibriSpeech)'))
    wants.discard('localisation')
  modes = tuple(m for m in metrics.MODES if m in wants)
  per_frame, random_order, utterance = {}, {}, {}
  # The re-initialized network of the cascading randomisation, one for every method and frame
  # (as MPRT randomizes the model once for a batch), drawn once.
  fresh = (jax.jit(metrics.fresh_layers)(layers, _network_key(s.seed))
           if 'randomisation' in wants else None)

  def curves(orders, maps):
    fn = _curves_function(tuple(s.granularities), modes, orders, float(s.step), int(s.patch))
    return _in_chunks(
        lambda w, t, m, k: fn(layers, w, t, m, baseline, jax.random.wrap_key_data(k)),
        (found.windows_NxWxF, found.targets_N, maps, keys), s.frame_batch)

  if modes:  # The random order does not depend on the map: one set of curves for all methods.
    random_order = {k.rsplit('/', 1)[0]: v for k, v in
                    curves(('random',), np.zeros_like(found.windows_NxWxF)).items()}
  def score(name: str) -> tuple[dict[str, np.ndarray], Optional[np.ndarray]]:
    """Every wanted metric of one method, and its utterance-level deletion curve."""
    progress(name)
    maps = make_maps(name, layers, found.windows_NxWxF, found.targets_N, s.seed, s.frame_batch)
    result: dict[str, np.ndarray] = {}
    if modes:
      for key, value in curves(('morf', 'lerf'), maps).items():
        mode = key.split('/')[1]
        result[f'{key}/curve'] = value
        result[f'{key}/auc'] = np.trapezoid(value, np.asarray(metrics.fractions(s.step)), axis=1)
        result[f'{key}/aopc'] = np.asarray(jax.vmap(metrics.aopc, in_axes=(0, None))(value, mode))
    network_metrics = tuple(sorted(wants & {'randomisation', 'random_logit', 'max_sensitivity'}))
    if network_metrics and METHODS[name] is not None:
      fn = _network_metrics_function(name, network_metrics, int(s.max_sensitivity_samples),
                                     float(s.max_sensitivity_radius), int(s.seed))
      result.update(_in_chunks(
          lambda w, t, k, m: _correlations(m, fn(layers, fresh, w, t,
                                                 jax.random.wrap_key_data(k), m)),
          (found.windows_NxWxF, found.targets_N, keys, maps), s.frame_batch))
    if wants & {'localisation', 'sparseness'}:
      for key, value in _in_chunks(_map_metrics_function(_sort_pieces()),
                                   (maps, found.inside_NxW), s.frame_batch).items():
        if key.split('/')[0] in wants:
          result[key] = np.where(found.has_span_N, value, np.nan) if key.startswith(
              'localisation') else value
    deleted = (_utterance_deletion(config, variables, found, maps, s.utterance_fractions,
                                   s.utterance_count, s.seed)
               if 'utterance_deletion' in wants else None)
    return result, deleted

  # Two methods at a time: most of a method's time on few frames is XLA compiling its
  # programs, which runs on one core; the other method's compiling or running fills the
  # other. Every method's numbers depend on its own inputs only, so the order does not matter.
  if modes:  # Made once here, not by both threads at once.
    _curves_function(tuple(s.granularities), modes, ('morf', 'lerf'), float(s.step),
                     int(s.patch))
  with concurrent.futures.ThreadPoolExecutor(max_workers=_THREADS) as pool:
    for name, (result, deleted) in zip(s.methods, pool.map(score, s.methods)):
      per_frame[name] = result
      if deleted is not None:
        utterance[name] = deleted
  if 'utterance_deletion' in wants:
    utterance['random order'] = _utterance_deletion(config, variables, found, None,
                                                    s.utterance_fractions, s.utterance_count,
                                                    s.seed)
  for m in ('randomisation', 'random_logit', 'max_sensitivity'):
    if m in wants and 'random' in s.methods:
      notes.append(f'{m} is not defined for the random baseline (its map ignores the network)')
  return {'frames': n, 'timed_frames': int(found.has_span_N.sum()),
          'letters': [vocab.letter_of(int(t)) for t in found.targets_N],
          'settings': s.to_dict(), 'fractions': np.asarray(metrics.fractions(s.step)),
          'per_frame': per_frame, 'random_order': random_order,
          'utterance_deletion': utterance, 'notes': notes,
          'utterances': sum(1 for u in found.utterances if u[3]),
          'deletion_utterances': min(s.utterance_count,
                                     sum(1 for u in found.utterances if u[3]))}
