"""The network as layers: the VALID pass equals the model's, batch-norm folding keeps it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax import model
from navai_jax import network


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def test_batch_norm_folding_keeps_the_forward_pass(tiny_variables, quick):
  config, variables = tiny_variables(1)
  x = jax.random.normal(jax.random.key(14), (206, 128), jnp.float64)

  def run(variables, x):
    layers = network.layers_from_variables(config, variables)
    folded = network.fold_batch_norm(layers)
    logits, _ = model.apply_inference(config, variables, x[None], padding='VALID')
    _, pre = network.forward(layers, x)
    _, pre_folded = network.forward(folded, x)
    return (logits[0], network.output(layers, pre), network.output(folded, pre_folded),
            [network.batch_norm(l, z) for l, z in zip(layers, pre)], pre_folded, folded)

  logits, from_layers, from_folded, normalized, pre_folded, folded = quick(run, variables, x)
  assert all(layer.bn is None and layer.bias_D is not None for layer in folded)
  np.testing.assert_allclose(from_layers, logits, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(from_folded, logits, rtol=1e-10, atol=1e-10)
  for z, z_folded in zip(normalized, pre_folded):
    np.testing.assert_allclose(z, z_folded, rtol=1e-9, atol=1e-9)


def test_check_targets_names_the_problem():
  network.check_targets(None, 3)
  network.check_targets(np.asarray([0, 5, 30]), 3)
  with pytest.raises(ValueError, match='expected 3 integer target classes'):
    network.check_targets(np.asarray([0, 5]), 3)
  with pytest.raises(ValueError, match='expected 2 integer target classes'):
    network.check_targets(np.asarray([0.0, 5.0]), 2)
  with pytest.raises(ValueError, match=r'must lie in \[0, 31\), got 0..31'):
    network.check_targets(np.asarray([0, 31]), 2)
