"""Batch-norm statistics of a pool: the pairwise merge, layer 1 against its literal formula, the
fixed point every layer reaches, the same statistics however the pool is batched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.training import bn_statistics
from navai_jax.training import parallel


def _pool(tones):
  """Every text once in two batches of four; the second holds two filler rows (weight 0)."""
  texts = tones.texts
  return [tones.make_batch(list(texts[:4])),
          tones.make_batch(list(texts[4:]) + ['cat', 'cat'], weights=[1, 1, 0, 0])]


def test_merge_is_the_mean_and_variance_of_the_union():
  rng = np.random.default_rng(0)
  groups = [rng.normal(k, 1 + k, (n, 3)) for k, n in enumerate((3, 1, 7))]
  n, mean, m2 = bn_statistics.merge([len(g) for g in groups], [g.mean(0) for g in groups],
                                    [((g - g.mean(0)) ** 2).sum(0) for g in groups])
  union = np.concatenate(groups)
  assert n == 11
  np.testing.assert_allclose(mean, union.mean(0), rtol=1e-12)
  np.testing.assert_allclose(m2 / n, union.var(0), rtol=1e-12)
  with pytest.raises(ValueError, match='No real frame'):
    bn_statistics.merge(np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3)))


def test_layer_one_is_its_conv_output_over_the_real_frames(tiny_variables, tones):
  config, variables = tiny_variables(1, jnp.float32)
  got = bn_statistics.pool_moments(config, variables, _pool(tones))['bn_1']
  # Each text alone, unpadded, in float64: the filler rows (two more 'cat') count nowhere.
  zs = []
  for text in tones.texts:
    audio = tones.tone_audio(text)
    x, _ = features.log_mel(jnp.asarray(audio)[None], jnp.asarray([len(audio)]), config)
    _, intermediates = model.apply_inference(config, variables, x)
    zs.append(np.asarray(intermediates['layer_1']['pre'][0], np.float64))
  z = np.concatenate(zs)
  assert got['frames'] == len(z)
  np.testing.assert_allclose(got['mean'], z.mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got['var'], z.var(0), rtol=1e-4)


def test_every_layer_ends_at_the_statistics_of_its_own_input(tiny_variables, tones):
  config, variables = tiny_variables(1, jnp.float32)
  pool = _pool(tones)
  new = bn_statistics.precise(config, variables, lambda: pool)
  again = bn_statistics.pool_moments(config, new, pool)
  assert set(again) == set(new['batch_stats']) == set(variables['batch_stats'])
  for name, stats in new['batch_stats'].items():
    np.testing.assert_allclose(again[name]['mean'], stats['mean'], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(again[name]['var'], stats['var'], rtol=1e-4)
    # Not the drawn statistics any more (those are no layer's).
    assert np.abs(np.asarray(stats['var']) - variables['batch_stats'][name]['var']).max() > 0.1
  assert new['params'] is variables['params']


def test_the_same_statistics_however_the_pool_is_batched(tiny_variables, tones):
  config, variables = tiny_variables(1, jnp.float32)
  alone = [tones.make_batch([t], num_samples=len(tones.tone_audio(t))) for t in tones.texts]
  one = bn_statistics.precise(config, variables, lambda: alone,
                              mesh=parallel.make_mesh(jax.devices()[:1]))
  four = bn_statistics.precise(config, variables, lambda: _pool(tones))
  for name in one['batch_stats']:
    for key in ('mean', 'var'):
      np.testing.assert_allclose(one['batch_stats'][name][key], four['batch_stats'][name][key],
                                 rtol=1e-5, atol=1e-5)
