"""Streaming per-class moments of frames and Welch's t statistic (SPEC §8.4-5).

Aligned frames are folded, batch by batch, into per-class moments (count, mean and the sum of
squared deviations M2 of every pixel), merged with the parallel formula of Chan, Golub &
LeVeque (1979): merges of partial states - batches, devices, classes - are exact, and memory
does not grow with the number of frames.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Moments(NamedTuple):
  """Per-class pixel moments: `count [..., Y]`, `mean` and `m2 [..., Y, W, F]`.

  `m2` is the sum of squared deviations from the mean (variance = m2 / (count - ddof)).
  Leading axes (alignment methods, devices) are allowed; every function maps over them.
  """
  count: Array
  mean: Array
  m2: Array


def empty_moments(num_classes: int, frame_shape: tuple[int, ...],
                  leading: tuple[int, ...] = ()) -> Moments:
  """Moments of no frames."""
  return Moments(jnp.zeros(leading + (num_classes,), jnp.float32),
                 jnp.zeros(leading + (num_classes,) + frame_shape, jnp.float32),
                 jnp.zeros(leading + (num_classes,) + frame_shape, jnp.float32))


def batch_moments(x_NxWxF: Array, class_N: Array, valid_N: Array, num_classes: int) -> Moments:
  """Moments of one batch of frames per class (two passes over the batch: mean, then M2).

  Frames with `valid_N` False or a class outside [0, num_classes) are ignored.
  """
  onehot_NxY = ((class_N[:, None] == jnp.arange(num_classes)[None]) & valid_N[:, None]
                ).astype(jnp.float32)
  count_Y = onehot_NxY.sum(0)
  x_NxQ = x_NxWxF.reshape(x_NxWxF.shape[0], -1)
  mean_YxQ = (onehot_NxY.T @ x_NxQ) / jnp.maximum(count_Y, 1.0)[:, None]
  centred_NxQ = x_NxQ - onehot_NxY @ mean_YxQ
  m2_YxQ = onehot_NxY.T @ (centred_NxQ * centred_NxQ)
  shape = (num_classes,) + x_NxWxF.shape[1:]
  return Moments(count_Y, mean_YxQ.reshape(shape), m2_YxQ.reshape(shape))


def combine(a: Moments, b: Moments) -> Moments:
  """Exact merge of two partial states (Chan, Golub & LeVeque's parallel formula).

  An empty side returns the other side bit for bit, so merging into an empty state (a
  resumed pass, an idle device) changes no number.
  """
  na, nb = a.count, b.count
  n = na + nb
  expand = lambda c: c.reshape(c.shape + (1,) * (a.mean.ndim - c.ndim))
  na_, nb_, n_ = expand(na), expand(nb), expand(jnp.maximum(n, 1.0))
  delta = b.mean - a.mean
  mean = a.mean + delta * (nb_ / n_)
  m2 = a.m2 + b.m2 + delta * delta * (na_ * nb_ / n_)
  mean = jnp.where(na_ == 0, b.mean, jnp.where(nb_ == 0, a.mean, mean))
  m2 = jnp.where(na_ == 0, b.m2, jnp.where(nb_ == 0, a.m2, m2))
  return Moments(n, mean, m2)


def reduce_moments(m: Moments, axis: int) -> Moments:
  """Merges the partial states along the count axis `axis` (k-way form of Chan's formula).

  count = Σ n_k, mean = Σ n_k mean_k / count, M2 = Σ (M2_k + n_k (mean_k - mean)²).
  `axis` counts over the axes of `m.count`; e.g. the class axis gives all-class moments.
  """
  axis = axis % m.count.ndim
  expand = lambda c: c.reshape(c.shape + (1,) * (m.mean.ndim - m.count.ndim))
  count = m.count.sum(axis)
  n_k = expand(m.count)
  mean = (n_k * m.mean).sum(axis) / expand(jnp.maximum(count, 1.0))
  deviation = m.mean - jnp.expand_dims(mean, axis)
  m2 = (m.m2 + n_k * deviation * deviation).sum(axis)
  return Moments(count, mean, m2)


def variance(m: Moments, ddof: int = 1) -> Array:
  """Per-pixel variance (NaN where a class has `ddof` frames or fewer)."""
  n = m.count.reshape(m.count.shape + (1,) * (m.mean.ndim - m.count.ndim))
  return jnp.where(n > ddof, m.m2 / jnp.maximum(n - ddof, 1.0), jnp.nan)


def welch_t(a: Moments, b: Moments) -> Array:
  """Welch's t statistic of every pixel, sample `a` against sample `b` (unequal variances).

  t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b) with ddof-1 variances; NaN where a
  side has fewer than two frames. Equals `scipy.stats.ttest_ind(a, b, equal_var=False)`.
  """
  expand = lambda c: c.reshape(c.shape + (1,) * (a.mean.ndim - c.ndim))
  se2 = (variance(a) / expand(jnp.maximum(a.count, 1.0))
         + variance(b) / expand(jnp.maximum(b.count, 1.0)))
  return (a.mean - b.mean) / jnp.sqrt(se2)


# What a class's mean is normalized against (paper §3.5): the mean of all frames of all
# classes ('frames', the paper's: a frequent class weighs more), or the mean of the class means
# ('classes': every class with frames counts once).
BASELINES = ('frames', 'classes')


def normalized_patterns(mean_YxD: np.ndarray, count_Y: np.ndarray,
                        baseline: str = 'frames') -> np.ndarray:
  """NAvAI's normalization (paper §3.5): each class's mean minus the `baseline` mean.

  Args:
    mean_YxD: per-class means (class axis -1 of `count_Y`, any trailing axes; values of
      classes without frames are ignored); count_Y: frames per class.
    baseline: one of BASELINES.
  Returns:
    float64 `[..., Y, ...]` like `mean_YxD`; NaN for classes without frames.
  """
  if baseline not in BASELINES:
    raise ValueError(f'Unknown normalization baseline {baseline!r}; choose one of '
                     f'{", ".join(BASELINES)}.')
  count = np.asarray(count_Y, np.float64)
  has = count > 0
  expand = lambda a: a.reshape(a.shape + (1,) * (np.ndim(mean_YxD) - a.ndim))
  weights = count if baseline == 'frames' else has.astype(np.float64)
  weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1.0)
  mean = np.where(expand(has), np.asarray(mean_YxD, np.float64), 0.0)
  centre = (expand(weights) * mean).sum(count.ndim - 1, keepdims=True)
  return np.where(expand(has), mean - centre, np.nan)


def summarize(m: Moments, baseline: str = 'frames') -> dict[str, np.ndarray]:
  """NAvAI results from per-class moments with class axis -1 of `count`.

  Returns numpy arrays: `count`, per-class `mean`, `all_mean` (all frames of all classes),
  `normalized` (`normalized_patterns` against `baseline`; the paper's 'frames' is class mean
  - all-class mean), `tmap` (Welch t of a class's frames against all frames of all classes,
  the class's own frames included, so it tests "does this class differ from the average frame
  that is normalized away"). The t-maps are for display, not significance: a frame and its
  neighbours share 204 of their 206 columns, so frames are far from independent, and each
  class's frames are part of the sample it is compared with. Classes without frames have NaN
  means, patterns and t-maps.
  """
  all_m = reduce_moments(m, axis=-1)
  c = m.count.shape[-1]
  all_c = jax.tree.map(lambda v: jnp.repeat(jnp.expand_dims(v, m.count.ndim - 1), c,
                                            axis=m.count.ndim - 1), all_m)
  has = m.count.reshape(m.count.shape + (1,) * (m.mean.ndim - m.count.ndim)) > 0
  mean = jnp.where(has, m.mean, jnp.nan)
  return {
      'count': np.asarray(m.count).astype(np.int64),
      'mean': np.asarray(mean),
      'all_mean': np.asarray(all_m.mean),
      'all_count': np.asarray(all_m.count).astype(np.int64),
      'normalized': (np.asarray(mean - all_c.mean) if baseline == 'frames' else
                     normalized_patterns(m.mean, m.count, baseline).astype(np.float32)),
      'tmap': np.asarray(welch_t(m, all_c)),
  }


def fold(m: Moments, x_NxWxF: Array, class_N: Array, valid_N: Array) -> Moments:
  """`m` with one batch of frames added (classes outside [0, Y) and invalid frames ignored)."""
  return combine(m, batch_moments(x_NxWxF, class_N, valid_N, m.count.shape[-1]))

