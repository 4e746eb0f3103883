"""The network as layers: the VALID pass equals the model's, batch-norm folding keeps it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import model
from navai_jax.recognizer import network


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


@pytest.mark.parametrize('kernel,stride,channels,length', [
    (48, 2, (5, 3), 206), (48, 2, (5, 3), 207), (7, 1, (4, 6), 30), (32, 1, (3, 8), 32),
    (32, 1, (3, 8), 40), (1, 1, (6, 4), 1), (4, 2, (2, 3), 11), (3, 2, (2, 3), 12),
    (5, 3, (2, 2), 23)])
def test_conv_transpose_is_the_literal_sum_of_the_convolutions_vjp(kernel, stride, channels,
                                                                   length):
  rng = np.random.default_rng(kernel + length)
  c, d = channels
  w = rng.normal(size=(kernel, c, d))
  a = rng.normal(size=(length, c))
  num_out = (length - kernel) // stride + 1
  s = rng.normal(size=(num_out, d))
  # The definition: input i collects w[i - u S] s[u] from every output u whose window holds it.
  literal = np.zeros((length, c))
  for u in range(num_out):
    literal[u * stride:u * stride + kernel] += w @ s[u]
  fast = network.conv_transpose(jnp.asarray(s), jnp.asarray(w), stride, length)
  _, vjp = jax.vjp(lambda a: network._plain_conv(a, jnp.asarray(w), stride), jnp.asarray(a))
  np.testing.assert_allclose(fast, literal, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(vjp(jnp.asarray(s))[0], literal, rtol=1e-12, atol=1e-12)
  # The custom vjp of `conv` gives the same input and kernel gradients as lax's own.
  loss = lambda f: lambda a, w: jnp.sum(f(a, w) * s)
  ours = jax.grad(loss(lambda a, w: network.conv(a, w, stride)), (0, 1))(a, w)
  plain = jax.grad(loss(lambda a, w: network._plain_conv(a, w, stride)), (0, 1))(a, w)
  for x, y in zip(ours, plain):
    np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_conv_transpose_refuses_what_it_cannot_compute():
  with pytest.raises(ValueError, match='needs at least 12 inputs, got length 10'):
    network.conv_transpose(jnp.zeros((6, 2)), jnp.zeros((7, 2, 2)), 1, 10)
