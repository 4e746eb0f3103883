"""Streaming moments: folds equal the direct mean and variance, merges with empty states change
nothing, the t-map equals scipy's Welch test."""

import jax.numpy as jnp
import numpy as np
import scipy.stats

from navai_jax.introspection import moments


def _random_frames(seed, n, num_classes, shape=(206, 5)):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n,) + shape).astype(np.float32) * 2 + 3
  classes = rng.integers(-1, num_classes + 1, size=n)  # -1 and num_classes are ignored
  valid = rng.random(n) > 0.2
  return x, classes, valid


def test_streaming_moments_equal_mean_and_variance():
  x, classes, valid = _random_frames(0, 300, 4)
  m = moments.empty_moments(4, x.shape[1:])
  for lo, hi in [(0, 100), (100, 101), (101, 201), (201, 300)]:  # uneven batches
    m = moments.fold(m, jnp.asarray(x[lo:hi]), jnp.asarray(classes[lo:hi]),
                   jnp.asarray(valid[lo:hi]))
  var = moments.variance(m)
  for c in range(4):
    mine = x[(classes == c) & valid]
    assert m.count[c] == len(mine)
    np.testing.assert_allclose(m.mean[c], jnp.mean(mine, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var[c], jnp.var(mine, axis=0, ddof=1), rtol=1e-4, atol=1e-5)
  every = x[(classes >= 0) & (classes < 4) & valid]
  whole = moments.reduce_moments(m, axis=-1)
  np.testing.assert_allclose(whole.mean, jnp.mean(every, axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(moments.variance(whole), jnp.var(every, axis=0, ddof=1), rtol=1e-4)


def test_merging_with_an_empty_state_changes_nothing():
  x, classes, valid = _random_frames(1, 50, 3)
  m = moments.batch_moments(jnp.asarray(x), jnp.asarray(classes), jnp.asarray(valid), 3)
  empty = moments.empty_moments(3, x.shape[1:])
  for merged in (moments.combine(empty, m), moments.combine(m, empty)):
    for got, want in zip(merged, m):
      np.testing.assert_array_equal(got, want)


def test_tmap_equals_scipy_welch_test():
  x, classes, valid = _random_frames(2, 120, 3, shape=(206, 2))
  m = moments.fold(moments.empty_moments(3, x.shape[1:]), jnp.asarray(x), jnp.asarray(classes),
                 jnp.asarray(valid))
  summary = moments.summarize(m)
  every = x[(classes >= 0) & (classes < 3) & valid]
  for c in range(3):
    mine = x[(classes == c) & valid]
    want = scipy.stats.ttest_ind(mine, every, axis=0, equal_var=False).statistic
    np.testing.assert_allclose(summary['tmap'][c], want, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(summary['normalized'][c], mine.mean(0) - every.mean(0),
                               rtol=1e-4, atol=1e-5)
  # The other baseline: the mean of the class means, each class once (written out here).
  by_class = moments.summarize(m, baseline='classes')['normalized']
  class_means = [x[(classes == c) & valid].mean(0) for c in range(3)]
  for c in range(3):
    np.testing.assert_allclose(by_class[c], class_means[c] - np.mean(class_means, 0),
                               rtol=1e-4, atol=1e-5)
