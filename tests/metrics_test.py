"""Attribution metrics on networks and maps whose answer is known: a network that reads one bin,
a linear model (gradient x input exactly faithful), randomisation that decorrelates, the closed
form of max-sensitivity of a linear map, literal formulas for AUC, AOPC, Gini, Spearman and the
localisation scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from navai_jax.introspection import attribution
from navai_jax.faithfulness import metrics
from navai_jax.recognizer import network

W, F = 12, 6  # a small window: the metrics do not depend on its size


@pytest.fixture(autouse=True)
def float64():
  """Exact comparisons with literal formulas, in float64."""
  with jax.enable_x64(True):
    yield


def _one_bin_network(w0, f0):
  """Two layers over a `[W, F]` window whose class-1 logit is relu(4 x[w0, f0]), class 0's 0."""
  k1 = np.zeros((W, F, 2))
  k1[w0, f0, 0] = 4.0
  k2 = np.zeros((1, 2, 2))
  k2[0, 0, 1] = 1.0
  return (network.Layer(jnp.asarray(k1), None, None, 1),
          network.Layer(jnp.asarray(k2), jnp.zeros(2), None, 1))


def test_a_network_that_reads_one_bin_has_it_first_and_its_deletion_drops_the_score():
  w0, f0 = 7, 2
  layers = _one_bin_network(w0, f0)
  x = jax.random.normal(jax.random.key(0), (W, F), jnp.float64).at[w0, f0].set(1.0)
  target = jnp.asarray(1)
  sensitivity = attribution.sensitivity_map(layers, x, target)
  unit_of, relevance = metrics.units(sensitivity, 'bin')
  rank = metrics.removal_rank(relevance, 'morf')
  assert int(rank[unit_of[w0, f0]]) == 0
  score = functools.partial(metrics.window_probability, layers)
  full = float(score(x, target))
  assert full == pytest.approx(1 / (1 + np.exp(-4)))
  morf = metrics.perturbation_curve(score, x, target, sensitivity, mode='deletion', order='morf',
                               granularity='bin', step=0.1)
  lerf = metrics.perturbation_curve(score, x, target, sensitivity, mode='deletion', order='lerf',
                               granularity='bin', step=0.1)
  np.testing.assert_allclose(morf, [full] + [0.5] * 10)  # gone at the first step
  np.testing.assert_allclose(lerf, [full] * 10 + [0.5])  # gone only at the last
  assert metrics.auc(morf, 0.1) < metrics.auc(lerf, 0.1)
  insertion = metrics.perturbation_curve(score, x, target, sensitivity, mode='insertion',
                                    order='morf', granularity='column', step=0.1)
  np.testing.assert_allclose(insertion, [0.5] + [full] * 10)


@pytest.mark.parametrize('granularity', metrics.GRANULARITIES)
def test_gradient_x_input_of_a_linear_model_is_exactly_faithful(granularity):
  kx, kw = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (W, F), jnp.float64)
  w = jax.random.normal(kw, (W, F), jnp.float64)
  score = lambda x, t: jnp.sum(w * x)
  gxi = x * jax.grad(lambda x: score(x, 0))(x)
  curve = metrics.perturbation_curve(score, x, 0, gxi, mode='deletion', order='morf',
                                granularity=granularity, step=0.05, patch=4)
  # Literal: deleting a unit (baseline 0) removes exactly its relevance from the score.
  unit_of, relevance = metrics.units(gxi, granularity, 4)
  removed = np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(relevance))[::-1])])
  counts = np.round(np.asarray(metrics.fractions(0.05)) * relevance.shape[0]).astype(int)
  np.testing.assert_allclose(curve, float(score(x, 0)) - removed[counts], atol=1e-10)
  assert unit_of.shape == (W, F)


def test_units_of_patches_are_literal_block_sums_with_partial_edges():
  m = np.arange(W * F, dtype=np.float64).reshape(W, F)
  unit_of, relevance = metrics.units(jnp.asarray(m), 'patch', 5)  # 12 x 6 -> 3 x 2 blocks
  blocks = [m[i:i + 5, j:j + 5].sum() for i in range(0, W, 5) for j in range(0, F, 5)]
  np.testing.assert_allclose(relevance, blocks)
  assert unit_of[11, 5] == 5 and unit_of[0, 0] == 0
  np.testing.assert_allclose(metrics.units(jnp.asarray(m), 'column')[1], m.sum(1))


def test_fractions_orders_auc_and_aopc_follow_their_formulas():
  np.testing.assert_allclose(metrics.fractions(0.05), np.linspace(0, 1, 21), atol=1e-7)
  np.testing.assert_allclose(metrics.fractions(0.3), [0, 0.3, 0.6, 0.9, 1.0], atol=1e-7)
  for bad in (0, -0.1, 1.5):
    with pytest.raises(ValueError, match=r'step must be a fraction of the units in \(0, 1\]'):
      metrics.fractions(bad)
  r = jnp.asarray([0.3, -1.0, 2.0, 0.3])
  np.testing.assert_array_equal(metrics.removal_rank(r, 'morf'), [1, 3, 0, 2])
  np.testing.assert_array_equal(metrics.removal_rank(r, 'lerf'), [1, 0, 3, 2])
  assert sorted(np.asarray(metrics.removal_rank(r, 'random', jax.random.key(0)))) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="unknown order 'best'"):
    metrics.removal_rank(r, 'best')
  scores = jnp.asarray([0.9, 0.5, 0.2, 0.1, 0.0])
  p = np.asarray(metrics.fractions(0.25))
  assert float(metrics.auc(scores, 0.25)) == pytest.approx(
      sum((p[i + 1] - p[i]) * (scores[i] + scores[i + 1]) / 2 for i in range(4)))
  assert float(metrics.aopc(scores, 'deletion')) == pytest.approx(np.mean(0.9 - np.asarray(scores)))
  assert float(metrics.aopc(scores[::-1], 'insertion')) == pytest.approx(
      np.mean(np.asarray(scores[::-1]) - 0.0))


def test_spearman_equals_scipy_with_ties():
  rng = np.random.default_rng(2)
  a = rng.integers(0, 5, (W, F)).astype(np.float64)  # many ties
  b = a + rng.normal(0, 2, (W, F))
  assert float(metrics.spearman(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
      scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_randomisation_of_the_top_layers_only(random_layers):
  layers = random_layers(3, batch_norm=True, bias=True)
  key = jax.random.key(4)
  same = metrics.randomize_from_top(layers, key, 0)
  for a, b in zip(jax.tree.leaves(layers), jax.tree.leaves(same)):
    np.testing.assert_array_equal(a, b)
  one = metrics.randomize_from_top(layers, key, 1)
  np.testing.assert_array_equal(one[0].kernel_KxCxD, layers[0].kernel_KxCxD)
  assert not np.allclose(one[-1].kernel_KxCxD, layers[-1].kernel_KxCxD)
  assert float(one[-1].kernel_KxCxD.std()) == pytest.approx(
      1 / np.sqrt(np.prod(one[-1].kernel_KxCxD.shape[:2])), rel=0.5)
  every = metrics.randomize_from_top(layers, key, len(layers))
  np.testing.assert_array_equal(every[0].bn['var'], 1.0)
  # The same key gives a layer the same new weights at every stage.
  np.testing.assert_array_equal(every[-1].kernel_KxCxD, one[-1].kernel_KxCxD)


def _gradient_x_input(layers, x, t):
  return attribution.gradient_x_input_map(layers, x, t)


def _logit_gradient(layers, x, t):
  return attribution.sensitivity_map(layers, x, t, output='logit')


def test_maps_decorrelate_as_the_network_is_randomized(random_layers):
  layers = random_layers(5, batch_norm=True, bias=True)
  cascade = jax.jit(metrics.cascading_randomisation, static_argnums=0)
  seeds = range(8)
  for explain, most in ((_gradient_x_input, 0.6), (_logit_gradient, 0.35)):
    correlations = np.stack([np.asarray(cascade(explain, layers, random_layers.input(s),
                                                jnp.asarray(1), jax.random.key(s)))
                             for s in seeds])
    assert correlations.shape == (len(seeds), len(layers) + 1)
    np.testing.assert_allclose(correlations[:, 0], 1.0)
    # With every layer random, the maps no longer follow the trained ones (gradient x input
    # keeps some correlation through x itself).
    assert np.mean(np.abs(correlations[:, -1])) < most


def test_metrics_given_the_map_equal_the_metrics_that_make_it(random_layers, quick):
  """The suite hands each network metric the map it has made already (as Quantus's
  `a_batch`); the result is the one the metric gets by making the map itself."""
  layers = random_layers(4, batch_norm=True, bias=True)
  x, target, key = random_layers.input(3), jnp.asarray(2), jax.random.key(9)
  explain = lambda x, t: _logit_gradient(layers, x, t)

  def both(x):
    given = explain(x, target)
    return (
        (metrics.cascading_randomisation(_logit_gradient, layers, x, target, key, map_WxF=given),
         metrics.cascading_randomisation(_logit_gradient, layers, x, target, key)),
        (metrics.random_logit(explain, x, target, 4, key, map_WxF=given),
         metrics.random_logit(explain, x, target, 4, key)),
        (metrics.max_sensitivity(explain, x, target, key, samples=6, map_WxF=given),
         metrics.max_sensitivity(explain, x, target, key, samples=6)),
        # Ranks made once correlate as `spearman` does.
        (metrics.spearman_of_ranks(metrics.centred_ranks(given), explain(x, 0)),
         metrics.spearman(given, explain(x, 0))),
        # A map given is the one used: the map x² for every class against -x² given.
        (metrics.random_logit(lambda x, t: x * x, x, target, 4, key, map_WxF=-x * x), -1.0),
        (metrics.max_sensitivity(lambda x, t: x * 0 + 1, x, target, key, samples=2,
                            map_WxF=jnp.full_like(x, 2.0)), 0.5),
        (metrics.cascading_randomisation(lambda l, x, t: x * x, layers, x, target, key,
                                    map_WxF=-x * x)[1:], -1.0))

  for with_map, without in quick(both, x):
    np.testing.assert_allclose(with_map, without, rtol=1e-6)


def test_random_logit_is_one_for_a_map_that_ignores_the_class():
  x = jax.random.normal(jax.random.key(6), (W, F))
  assert float(metrics.random_logit(lambda x, t: x * x, x, 3, 29, jax.random.key(0))) == pytest.approx(1)
  # The other class is never the target.
  others = [int(jnp.where(o >= 3, o + 1, o)) for o in
            (jax.random.randint(jax.random.key(k), (), 0, 28) for k in range(200))]
  assert 3 not in others and set(others) <= set(range(29))


def test_max_sensitivity_of_a_linear_map_has_its_closed_form():
  x = jax.random.normal(jax.random.key(7), (1, 2), jnp.float64)
  w = jnp.asarray([[2.0, -0.5]], jnp.float64)
  explain = lambda x, t: w * x  # gradient x input of the linear score w . x
  radius = 0.2
  # sup over d in [-r, r]^n of ||w d|| / ||w x|| = r ||w|| / ||w x||, at a corner of the cube.
  bound = radius * float(jnp.linalg.norm(w)) / float(jnp.linalg.norm(w * x))
  value = float(metrics.max_sensitivity(explain, x, 0, jax.random.key(8), samples=4000,
                                   radius=radius))
  assert 0.97 * bound < value <= bound
  constant = float(metrics.max_sensitivity(lambda x, t: w, x, 0, jax.random.key(8), samples=10))
  assert constant == 0.0


def test_gini_of_known_maps():
  one_hot = jnp.zeros((W, F)).at[3, 4].set(-2.0)
  assert float(metrics.gini(one_hot)) == pytest.approx((W * F - 1) / (W * F))
  assert float(metrics.gini(jnp.full((W, F), 0.7))) == pytest.approx(0.0, abs=1e-6)
  a = np.sort(np.abs(np.random.default_rng(9).normal(size=W * F)))
  n, i = len(a), np.arange(1, len(a) + 1)
  assert float(metrics.gini(jnp.asarray(a.reshape(W, F)))) == pytest.approx(
      np.sum((2 * i - n - 1) * a) / (n * a.sum()), rel=1e-5)


def test_localisation_scores():
  inside = jnp.zeros(W, bool).at[4:7].set(True)
  inside_map = jnp.zeros((W, F)).at[4:7].set(1.0).at[5, 2].set(3.0)
  scores = metrics.localisation(inside_map, inside)
  assert {k: float(v) for k, v in scores.items()} == pytest.approx(
      {'mass': 1.0, 'pointing': 1.0, 'rank': 1.0, 'chance': 3 / W})
  rng = np.random.default_rng(10)
  m = rng.normal(size=(W, F))
  scores = metrics.localisation(jnp.asarray(m), inside)
  mask = np.broadcast_to(np.asarray(inside)[:, None], (W, F))
  assert float(scores['mass']) == pytest.approx(np.abs(m)[mask].sum() / np.abs(m).sum(), rel=1e-5)
  assert float(scores['pointing']) == float(np.asarray(inside)[np.argmax(m) // F])
  top = np.argsort(-np.abs(m).ravel())[:mask.sum()]
  assert float(scores['rank']) == pytest.approx(mask.ravel()[top].mean())


@pytest.mark.parametrize('dtype', [np.int32, np.int64])
def test_sorted_with_positions_is_a_stable_argsort(dtype):
  """int32 keys take one sort of packed 64-bit words on CPU, int64 keys a sort with a payload:
  both are NumPy's stable argsort, ties and the extreme keys included, under vmap too."""
  rng = np.random.default_rng(4)
  keys = rng.integers(-50, 50, (3, 500)).astype(dtype)  # many ties, both signs
  keys[:, 0] = np.iinfo(dtype).max
  keys[:, 1] = np.iinfo(dtype).min
  keys[:, 2] = np.iinfo(dtype).min
  ordered, positions = jax.jit(jax.vmap(metrics._sorted_with_positions))(jnp.asarray(keys))
  assert ordered.dtype == dtype and positions.dtype == np.int32
  expected = np.argsort(keys, axis=1, kind='stable')
  np.testing.assert_array_equal(positions, expected)
  np.testing.assert_array_equal(ordered, np.take_along_axis(keys, expected, axis=1))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_average_ranks_and_spearman_equal_scipy_with_ties_signs_and_zeros(dtype):
  rng = np.random.default_rng(6)
  a = rng.normal(size=(40, 30)).round(1).astype(dtype)  # many ties
  a[::3] = 0.0
  a[::5] = -0.0  # equal to +0, as SciPy takes it
  b = (a + rng.normal(0, 0.5, a.shape)).round(1).astype(dtype)
  np.testing.assert_array_equal(jax.jit(metrics.average_ranks)(jnp.asarray(a.ravel())),
                                scipy.stats.rankdata(a.ravel()) - 1)
  for x, y in ((a, b), (b, a), (a, a)):
    assert float(jax.jit(metrics.spearman)(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(
        scipy.stats.spearmanr(x.ravel(), y.ravel()).statistic,
        abs=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_first_in_order_equals_the_stable_ranking_with_ties_signs_and_zeros(dtype):
  """The sorted-key selection used by the curves and relevance rank takes exactly the units a
  stable argsort ranks first, for every count, ties (zeros of both signs included) kept in
  index order."""
  rng = np.random.default_rng(0)
  values = rng.normal(size=300).round(1).astype(dtype)  # many ties
  values[::7] = 0.0
  values[::11] = -0.0
  values[5] = np.inf
  values[6] = -np.inf
  r = jnp.asarray(values)
  counts = jnp.arange(301)
  for order in ('morf', 'lerf'):
    by_numpy = np.argsort(-values if order == 'morf' else values, kind='stable')
    rank = np.empty(300, int)
    rank[by_numpy] = np.arange(300)
    np.testing.assert_array_equal(metrics.removal_rank(r, order), rank)
    expected = rank[None] < np.arange(301)[:, None]
    np.testing.assert_array_equal(metrics.first_in_order(r, order, counts), expected)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(lambda v: metrics.first_in_order(v, order, counts)))(jnp.stack([r, r])),
        np.stack([expected, expected]))
  key = jax.random.key(3)
  np.testing.assert_array_equal(
      metrics.first_in_order(r, 'random', counts, key),
      np.asarray(metrics.removal_rank(r, 'random', key))[None] < np.arange(301)[:, None])
  magnitude = np.abs(values[np.isfinite(values)])
  n, ordered = magnitude.size, np.sort(magnitude)
  expected_gini = np.sum((2 * np.arange(1, n + 1) - n - 1) * ordered) / (n * ordered.sum())
  assert float(metrics.gini(jnp.asarray(magnitude.reshape(-1, 1)))) == pytest.approx(expected_gini,
                                                                              rel=1e-5)


def test_vmap_in_parts_equals_one_vmap():
  rng = np.random.default_rng(5)
  maps = jnp.asarray(rng.normal(size=(7, W, F)).astype(np.float32))
  inside = jnp.asarray(rng.random((7, W)) < 0.2)
  one = jax.vmap(metrics.localisation)(maps, inside)
  for parts in (1, 2, 3, 7, 9):
    pieces = jax.jit(metrics.vmap_in_parts(metrics.localisation, parts))(maps, inside)
    for key in one:
      np.testing.assert_array_equal(pieces[key], one[key])
    np.testing.assert_array_equal(metrics.vmap_in_parts(metrics.gini, parts)(maps), jax.vmap(metrics.gini)(maps))
  with pytest.raises(ValueError, match='parts must be >= 1'):
    metrics.vmap_in_parts(metrics.gini, 0)
