"""Is a map faithful? Metrics of attribution maps over spectrogram frames (SPEC §11).

The paper judged sensitivity and LRP by how plausible their maps look, and NAvAI aligns frames
by the extremes of those maps. These metrics say how far a map describes what the network
uses. Each is a pure function of one frame (a `[206, F]` window), its map and a scoring
function; `jax.vmap` runs it over a batch of frames and `jax.jit` compiles it
(`suite.evaluate_attributions` does both).

`score(x_WxF, target) -> scalar` is the network's softmax probability of the target class at
the frame (`window_probability`); `explain(x_WxF, target) -> map_WxF` is an attribution
method (`attribution.METHODS` with fixed options).

| metric | what it measures | source |
|---|---|---|
| `perturbation_curve` | score while the units are removed (deletion) or added back (insertion) in order of relevance: most relevant first (MoRF), least relevant first (LeRF), or random; units are bins, time columns or T x F patches; steps of `step` of the units | Samek et al. 2017 (region perturbation, AOPC), Petsiuk et al. 2018 (deletion/insertion) |
| `auc`, `aopc` | area under such a curve (trapezoid rule over the removed fraction); the average score drop from the unperturbed input over the curve's steps | Petsiuk et al. 2018; Samek et al. 2017 |
| `spearman` in `cascading_randomisation` | rank correlation of the map on the trained network with the map after re-initializing the layers from the top down to layer l | Adebayo et al. 2018 (MPRT) |
| `random_logit` | rank correlation of the map of the predicted class with the map of a random other class | Sixt et al. 2020 |
| `max_sensitivity` | the largest relative change of the map, ||e(x + d) - e(x)|| / ||e(x)||, over `samples` draws of d uniform in [-r, r] per value | Yeh et al. 2019 |
| `localisation` | against the true time span of the spoken letter: share of |relevance| inside it (relevance mass), whether the map's maximum lies inside it (pointing game), share of the span's size in top-|relevance| bins that lie inside it (relevance rank) | Arras et al. 2022; Zhang et al. 2018 |
| `gini` | Gini index of |map|: 0 for a uniform map, (n - 1)/n for one non-zero value | Chalasani et al. 2020 |

Choices where the sources leave room (each documented where it is made): the deletion
baseline is 0, the mean of a z-normalized spectrogram (or any `[W, F]` array the caller
gives); AOPC averages over all steps including the unperturbed one (Samek et al.'s 1/(L+1)
sum); the pointing game uses the map's signed maximum, the position NAvAI's `*_max`
alignments use; ties in rank correlations get average ranks, as `scipy.stats.spearmanr`.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from navai_jax.recognizer import network

Array = jax.Array
Score = Callable[[Array, Array], Array]
Explain = Callable[[Array, Array], Array]

MODES = ('deletion', 'insertion')
ORDERS = ('morf', 'lerf', 'random')
GRANULARITIES = ('bin', 'column', 'patch')


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f'unknown {what} {value!r}; valid: {", ".join(choices)}')


def check_step(step: float) -> None:
  if not 0 < step <= 1:
    raise ValueError(f'step must be a fraction of the units in (0, 1], got {step}')


def window_probability(layers: network.Layers, x_WxF: Array, target: Array) -> Array:
  """Softmax probability of class `target` at the window's one output position."""
  return jax.nn.softmax(network.logits(layers, x_WxF))[target]


def fractions(step: float) -> Array:
  """Removed fractions 0, step, 2 step, ..., 1 (the last step may be shorter)."""
  check_step(step)
  n = int(round(1.0 / step, 9) // 1)
  values = [k * step for k in range(n + 1)]
  if values[-1] < 1.0 - 1e-9:
    values.append(1.0)
  return jnp.asarray(values, jnp.float32)


def units(map_WxF: Array, granularity: str, patch: int = 8) -> tuple[Array, Array]:
  """The perturbation units of a map: `(unit_of_WxF, relevance_Q)`.

  'bin': every time-frequency value; 'column': every time frame (all frequencies); 'patch':
  `patch` x `patch` blocks (the last row and column of blocks may be smaller). A unit's
  relevance is the sum of its values.
  """
  check_choice('granularity', granularity, GRANULARITIES)
  w, f = map_WxF.shape
  t_W, f_F = jnp.arange(w)[:, None], jnp.arange(f)[None, :]
  if granularity == 'bin':
    unit_of, count = t_W * f + f_F, w * f
  elif granularity == 'column':
    unit_of, count = jnp.broadcast_to(t_W, (w, f)), w
  else:
    if patch < 1:
      raise ValueError(f'patch must be >= 1, got {patch}')
    per_row = -(-f // patch)
    unit_of, count = (t_W // patch) * per_row + f_F // patch, -(-w // patch) * per_row
  relevance = jax.ops.segment_sum(map_WxF.reshape(-1), unit_of.reshape(-1), count)
  return unit_of, relevance


def removal_rank(relevance_Q: Array, order: str, key: Optional[Array] = None) -> Array:
  """Position of every unit in the order of removal (0 = removed first).

  'morf': descending relevance, 'lerf': ascending, 'random': a permutation drawn from `key`.
  Equal relevances keep the units' index order (stable sort).
  """
  check_choice('order', order, ORDERS)
  if order == 'random':
    if key is None:
      raise ValueError("order 'random' needs a key")
    sequence = jax.random.permutation(key, relevance_Q.shape[0])
  else:
    keys = _order_keys(relevance_Q)
    # ~k = -k - 1 reverses the order and never overflows.
    _, sequence = _sorted_with_positions(~keys if order == 'morf' else keys)
  # The inverse permutation by a scatter, not a second sort.
  return jnp.zeros_like(sequence).at[sequence].set(
      jnp.arange(sequence.shape[0], dtype=sequence.dtype))


# The integer type of a float's bits, by width in bytes.
_INT_OF_FLOAT = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def _order_keys(values: Array) -> Array:
  """Integer keys that sort as the float `values` compare (-0 and +0 equal, as in a float sort).

  XLA's CPU sort of int32 runs ~5x faster than its sort of floats (whose comparator handles
  NaN and signed zeros), so the metrics below sort these keys.
  """
  as_int = _INT_OF_FLOAT[jnp.dtype(values.dtype).itemsize]
  bits = jax.lax.bitcast_convert_type(jnp.where(values == 0, jnp.zeros_like(values), values),
                                      as_int)
  return jnp.where(bits < 0, bits ^ jnp.iinfo(as_int).max, bits)


def first_in_order(relevance_Q: Array, order: str, counts_S: Array,
                   key: Optional[Array] = None) -> Array:
  """`[S, Q]`: row s is True for the first `counts_S[s]` units in the order of removal.

  One ranking (`removal_rank`, one sort) serves all S rows, each then a comparison; a search
  of each row's boundary (a running count of its ties per row) cost more than the ranking on
  a bin curve's 17 rows (pixel flipping in `benchmarks/quantus_benchmark.py`).
  """
  return removal_rank(relevance_Q, order, key)[None] < counts_S[:, None]


def perturbation_curve(score: Score, x_WxF: Array, target: Array, map_WxF: Array, *,
                       mode: str, order: str, granularity: str, step: float = 0.05,
                       patch: int = 8, baseline_WxF: Optional[Array] = None,
                       key: Optional[Array] = None, max_steps: Optional[int] = None) -> Array:
  """Scores `[S]` at the fractions of `fractions(step)` of the units removed or inserted.

  Deletion: the first k units in removal order are set to the baseline, the rest keep x.
  Insertion: the first k units take their values from x, the rest are the baseline. The
  number of units at fraction p is round(p * units). `max_steps` keeps only the first that
  many fractions (the unperturbed input included): Samek et al.'s region perturbation of the
  first L regions is `step=1 / units, max_steps=L + 1`.
  """
  check_choice('mode', mode, MODES)
  baseline_WxF = jnp.zeros_like(x_WxF) if baseline_WxF is None else jnp.broadcast_to(
      baseline_WxF, x_WxF.shape)
  unit_of_WxF, relevance_Q = units(map_WxF, granularity, patch)
  counts_S = jnp.round(fractions(step)[:max_steps] * relevance_Q.shape[0])
  chosen_SxWxF = first_in_order(relevance_Q, order, counts_S, key)[:, unit_of_WxF]
  if mode == 'deletion':
    inputs = jnp.where(chosen_SxWxF, baseline_WxF[None], x_WxF[None])
  else:
    inputs = jnp.where(chosen_SxWxF, x_WxF[None], baseline_WxF[None])
  return jax.vmap(lambda x: score(x, target))(inputs)


def auc(scores_S: Array, step: float) -> Array:
  """Area under a perturbation curve over the removed fraction in [0, 1] (trapezoid rule)."""
  return jnp.trapezoid(scores_S, fractions(step))


def aopc(scores_S: Array, mode: str) -> Array:
  """Area over the perturbation curve (Samek et al. 2017): the mean over all S steps of the
  score drop from the unperturbed input (deletion: s_0 - s_k with s_0 the whole input;
  insertion, mirrored: s_k - s_0 with s_0 the baseline)."""
  check_choice('mode', mode, MODES)
  change = scores_S[0] - scores_S if mode == 'deletion' else scores_S - scores_S[0]
  return jnp.mean(change)


def _sorted_with_positions(keys: Array) -> tuple[Array, Array]:
  """`(keys in ascending order, the position in `keys` of each)` of flat integer keys; equal
  keys keep the order of their positions (a stable argsort).

  On CPU, of 32-bit keys: one sort of 64-bit words, each key above its position. XLA's CPU
  backend sorts one integer array several times as fast as keys with a payload (whose
  comparator it calls per pair; `benchmarks/quantus_benchmark.py` prints both for a map).
  Elsewhere, and for other widths, the sort with a payload.
  """
  positions = jnp.arange(keys.shape[0], dtype=jnp.int32)

  def with_payload(keys):
    return jax.lax.sort((keys, positions), num_keys=1, is_stable=True)

  if keys.dtype != jnp.int32 or keys.shape[0] >= 2**31:  # positions are int32
    return with_payload(keys)

  def packed(keys):
    with jax.enable_x64(True):
      flip = jnp.uint32(1 << 31)  # int32 order as unsigned order
      high = (jax.lax.bitcast_convert_type(keys, jnp.uint32) ^ flip).astype(jnp.uint64)
      words = jax.lax.sort((high << 32) | positions.astype(jnp.uint64), is_stable=False)
      ordered = jax.lax.bitcast_convert_type((words >> 32).astype(jnp.uint32) ^ flip,
                                             jnp.int32)
      return ordered, (words & jnp.uint64(0xFFFFFFFF)).astype(jnp.int32)

  return jax.lax.platform_dependent(keys, cpu=packed, default=with_payload)


def _run_ranks(ordered: Array) -> Array:
  """Ranks 0..n-1 of sorted keys, a run of equal keys sharing the mean of its ranks.

  The runs' ends are running maxima and minima by `associative_scan`, which XLA's CPU backend
  runs ~4x as fast as `lax.cummax` (a reduce window)."""
  n = ordered.shape[0]
  index = jnp.arange(n)
  different = ordered[1:] != ordered[:-1]
  first = jax.lax.associative_scan(
      jnp.maximum, jnp.where(jnp.concatenate([jnp.ones((1,), bool), different]), index, 0))
  last = jax.lax.associative_scan(
      jnp.minimum, jnp.where(jnp.concatenate([different, jnp.ones((1,), bool)]), index, n - 1),
      reverse=True)
  return (first + last) / 2.0


def average_ranks(values: Array) -> Array:
  """Ranks 0..n-1 of a flat array; equal values share the mean of their ranks."""
  ordered, positions = _sorted_with_positions(_order_keys(values))
  ranks = _run_ranks(ordered)
  return jnp.zeros_like(ranks).at[positions].set(ranks)


def centred_ranks(values: Array) -> Array:
  """`average_ranks` of the flattened `values` less their mean ((n - 1) / 2 exactly, ties
  or not): what `spearman` correlates, made once for a map that is correlated with many
  (`cascading_randomisation`)."""
  ranks = average_ranks(values.reshape(-1))
  return ranks - (ranks.shape[0] - 1) / 2.0


def spearman_of_ranks(ranks_a: Array, b: Array) -> Array:
  """`spearman(a, b)` with `ranks_a = centred_ranks(a)` given. b's ranks are not put back in
  place: its sort's positions pick the ranks of a that pair with them."""
  ordered, positions = _sorted_with_positions(_order_keys(b.reshape(-1)))
  rb = _run_ranks(ordered) - (ordered.shape[0] - 1) / 2.0
  return jnp.sum(ranks_a[positions] * rb) / jnp.sqrt(jnp.sum(ranks_a * ranks_a)
                                                     * jnp.sum(rb * rb))


def spearman(a: Array, b: Array) -> Array:
  """Spearman rank correlation of two arrays (flattened), ties as average ranks; NaN where
  one array is constant."""
  return spearman_of_ranks(centred_ranks(a), b)


def fresh_layers(layers: network.Layers, key: Array) -> network.Layers:
  """Every layer of `layers` re-initialized, as cascading randomisation re-initializes it.

  A re-initialized layer gets the kernel of Flax's default initializer (LeCun normal: N(0,
  1/fan_in)), a zero bias, and the batch norm of a fresh network (scale 1, bias 0, mean 0,
  variance 1), as resetting a PyTorch module's parameters does. Layer i's kernel is drawn from
  the i-th of `len(layers)` keys split from `key`.
  """
  out = []
  for k_i, layer in zip(jax.random.split(key, len(layers)), layers):
    k, c, _ = layer.kernel_KxCxD.shape
    kernel = (jax.random.normal(k_i, layer.kernel_KxCxD.shape, layer.kernel_KxCxD.dtype)
              / jnp.sqrt(k * c))
    bias = None if layer.bias_D is None else jnp.zeros_like(layer.bias_D)
    bn = None if layer.bn is None else {
        'scale': jnp.ones_like(layer.bn['scale']), 'bias': jnp.zeros_like(layer.bn['bias']),
        'mean': jnp.zeros_like(layer.bn['mean']), 'var': jnp.ones_like(layer.bn['var'])}
    out.append(network.Layer(kernel, bias, bn, layer.stride, layer.bn_epsilon))
  return tuple(out)


def top_replaced(layers: network.Layers, fresh: network.Layers, count: Array | int
                 ) -> network.Layers:
  """`layers` with the top `count` layers taken from `fresh` (`fresh_layers`). `count` may be
  traced, so one compiled program serves every stage."""
  def layer(i, old, new):
    pick = lambda a, b: None if a is None else jnp.where(i >= len(layers) - count, b, a)
    return network.Layer(pick(old.kernel_KxCxD, new.kernel_KxCxD), pick(old.bias_D, new.bias_D),
                         None if old.bn is None else jax.tree.map(pick, old.bn, new.bn),
                         old.stride, old.bn_epsilon)
  return tuple(layer(i, old, new) for i, (old, new) in enumerate(zip(layers, fresh)))


def randomize_from_top(layers: network.Layers, key: Array, count: Array | int
                       ) -> network.Layers:
  """`layers` with the top `count` layers re-initialized (cascading randomisation;
  `fresh_layers` says how). The same `key` gives a layer the same new weights whatever
  `count`."""
  return top_replaced(layers, fresh_layers(layers, key), count)


def randomized_maps(explain: Callable[[network.Layers, Array, Array], Array],
                    layers: network.Layers, x_WxF: Array, target: Array,
                    fresh: network.Layers) -> Array:
  """The maps `[L, W, F]` of `target` on the network whose top 1, 2, ..., L layers are taken
  from `fresh` (`fresh_layers`), one compiled map in a loop over the stages."""
  return jax.lax.map(lambda count: explain(top_replaced(layers, fresh, count), x_WxF, target),
                     jnp.arange(1, len(layers) + 1))


def randomisation_of_ranks(ranks: Array, randomized_LxWxF: Array) -> Array:
  """Spearman correlations `[L + 1]` of the trained network's map, whose `centred_ranks` are
  `ranks` (made once for all stages), with each of the maps `randomized_maps` made (entry 0,
  the trained network itself, is 1 by definition)."""
  randomized = jax.lax.map(lambda m: spearman_of_ranks(ranks, m), randomized_LxWxF)
  return jnp.concatenate([jnp.ones((1,), randomized.dtype), randomized])


def cascading_randomisation(explain: Callable[[network.Layers, Array, Array], Array],
                            layers: network.Layers, x_WxF: Array, target: Array,
                            key: Array, map_WxF: Optional[Array] = None) -> Array:
  """Spearman correlations `[L + 1]` of the map on the trained network with the map on the
  network whose top 0, 1, ..., L layers are re-initialized (entry 0 is 1 by definition).

  The same `key` draws the same new weights for a layer at every stage, so stage l differs
  from stage l - 1 only in layer L - l + 1. The target stays the trained network's class.
  `map_WxF`: the trained network's map where it is made already (as Quantus's `a_batch`).
  """
  trained = explain(layers, x_WxF, target) if map_WxF is None else map_WxF
  randomized = randomized_maps(explain, layers, x_WxF, target, fresh_layers(layers, key))
  return randomisation_of_ranks(centred_ranks(trained), randomized)


def other_class(key: Array, target: Array, num_classes: int) -> Array:
  """A class drawn uniformly from the `num_classes - 1` classes other than `target`."""
  other = jax.random.randint(key, (), 0, num_classes - 1)
  return jnp.where(other >= target, other + 1, other)


def random_logit(explain: Explain, x_WxF: Array, target: Array, num_classes: int,
                 key: Array, map_WxF: Optional[Array] = None) -> Array:
  """Spearman correlation of the map of `target` with the map of a class drawn uniformly from
  the `num_classes - 1` others (`other_class`; Sixt et al. 2020: a class-sensitive map
  differs). `map_WxF`: the map of `target` where it is made already."""
  return spearman(explain(x_WxF, target) if map_WxF is None else map_WxF,
                  explain(x_WxF, other_class(key, target, num_classes)))


def max_sensitivity(explain: Explain, x_WxF: Array, target: Array, key: Array, *,
                    samples: int = 200, radius: float = 0.2, chunk: int = 8,
                    map_WxF: Optional[Array] = None) -> Array:
  """max over `samples` draws of ||e(x + d) - e(x)||_F / ||e(x)||_F, d ~ U[-radius, radius]
  per value (Yeh et al. 2019; Quantus's MaxSensitivity defaults: 200 samples, radius 0.2).
  `map_WxF`: e(x) where it is made already."""
  if samples < 1 or radius <= 0:
    raise ValueError(f'max_sensitivity needs samples >= 1 and radius > 0, got {samples}, '
                     f'{radius}')
  noise = jax.random.uniform(key, (samples,) + x_WxF.shape, x_WxF.dtype, -radius, radius)
  return max_sensitivity_of_noise(explain, x_WxF, target, noise, chunk=chunk, map_WxF=map_WxF)


def max_sensitivity_of_noise(explain: Explain, x_WxF: Array, target: Array, noise_SxWxF: Array,
                             *, chunk: int = 8, map_WxF: Optional[Array] = None) -> Array:
  """`max_sensitivity` with the perturbations given. The maps of the perturbed inputs are made
  `chunk` at a time (`lax.map`), so memory does not grow with the number of samples."""
  reference = explain(x_WxF, target) if map_WxF is None else map_WxF

  def change(d):
    return jnp.linalg.norm(explain(x_WxF + d, target) - reference)

  changes = jax.lax.map(change, noise_SxWxF, batch_size=min(chunk, noise_SxWxF.shape[0]))
  return jnp.max(changes) / jnp.linalg.norm(reference)


def vmap_in_parts(fn: Callable, parts: int) -> Callable:
  """`jax.vmap(fn)` over the leading axis, as `parts` independent vmaps of consecutive pieces.

  For metrics that sort (`gini`, `localisation`'s rank, `spearman`): XLA's CPU backend runs
  one sort on one core however large its batch, but independent sorts at the same time, so
  on a CPU of several cores `parts` = its number of cores sorts that many times as fast.
  """
  if parts < 1:
    raise ValueError(f'parts must be >= 1, got {parts}')

  def run(*args):
    n = jax.tree.leaves(args)[0].shape[0]
    bounds = [round(n * k / parts) for k in range(parts + 1)]
    pieces = [jax.vmap(fn)(*jax.tree.map(lambda a, lo=lo, hi=hi: a[lo:hi], args))
              for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
    return jax.tree.map(lambda *p: jnp.concatenate(p), *pieces)
  return run


def localisation(map_WxF: Array, inside_W: Array) -> dict[str, Array]:
  """How a map lies against the true time span of the letter (`inside_W`: window columns
  inside it).

  Returns 'mass' (sum of |R| inside / sum of |R|), 'pointing' (1.0 if the map's maximum lies
  in a column inside, as NAvAI's `*_max` alignments take it), 'rank' (of the K bins with the
  largest |R|, K the number of bins inside, the share inside) and 'chance' (the share of bins
  inside: what a map that knows nothing scores on mass and rank).
  """
  magnitude = jnp.abs(map_WxF)
  inside_WxF = jnp.broadcast_to(inside_W[:, None], map_WxF.shape)
  mass = jnp.sum(jnp.where(inside_WxF, magnitude, 0.0)) / jnp.sum(magnitude)
  peak_column = jnp.argmax(map_WxF.reshape(-1)) // map_WxF.shape[1]
  k = jnp.sum(inside_WxF)
  top = first_in_order(magnitude.reshape(-1), 'morf', k[None])[0]
  rank = jnp.sum(top & inside_WxF.reshape(-1)) / jnp.maximum(k, 1)
  return {'mass': mass, 'pointing': inside_W[peak_column].astype(map_WxF.dtype),
          'rank': rank.astype(map_WxF.dtype), 'chance': (k / map_WxF.size).astype(map_WxF.dtype)}


def gini(map_WxF: Array) -> Array:
  """Gini index of |map| (Chalasani et al. 2020; Quantus's Sparseness):
  sum_i (2i - n - 1) a_(i) / (n sum_i a_i), a sorted ascending, i = 1..n."""
  magnitude = jnp.abs(map_WxF).reshape(-1)
  # Non-negative floats sort as their bits do (see `_order_keys`).
  as_int = _INT_OF_FLOAT[jnp.dtype(magnitude.dtype).itemsize]
  a = jax.lax.bitcast_convert_type(
      jax.lax.sort(jax.lax.bitcast_convert_type(magnitude, as_int), is_stable=False),
      magnitude.dtype)
  n = a.shape[0]
  i = jnp.arange(1, n + 1, dtype=a.dtype)
  return jnp.sum((2 * i - n - 1) * a) / (n * jnp.sum(a))
