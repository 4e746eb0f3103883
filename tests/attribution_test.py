"""Attribution methods: sensitivity == finite differences, integrated gradients on homogeneous
nets, SmoothGrad, guided backprop, Grad-CAM localizing in time only, the target probability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import attribution
from navai_jax.recognizer import model
from navai_jax.recognizer import network


def rel_error(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def test_sensitivity_equals_central_finite_differences(tiny_variables, quick):
  with jax.enable_x64(True):
    config, variables = tiny_variables(1)
    layers = network.layers_from_variables(config, variables)
    x = jax.random.normal(jax.random.key(2), (206, 128), jnp.float64)
    rng = np.random.default_rng(3)
    coords = np.stack([rng.integers(0, 206, 12), rng.integers(0, 128, 12)], axis=1)
    coords[:6, 0] = rng.integers(90, 116, 6)  # Where the gradient is large.
    h = 1e-6
    steps = np.zeros((24, 206, 128))
    steps[np.arange(12), coords[:, 0], coords[:, 1]] = h
    steps[12 + np.arange(12), coords[:, 0], coords[:, 1]] = -h

    def run(layers, x, steps):
      logits = lambda x: network.output(layers, network.forward(layers, x)[1])[0]
      target = jnp.argmax(logits(x))
      shifted = jax.vmap(logits)(x + steps)
      return (target, shifted, jax.nn.softmax(shifted),
              attribution.sensitivity_map(layers, x),
              attribution.sensitivity_map(layers, x, output='logit'))

    target, logits, probs, sens_softmax, sens_logit = quick(run, layers, x, jnp.asarray(steps))
    for scores, sens in ((probs, sens_softmax), (logits, sens_logit)):
      fd = (scores[:12, target] - scores[12:, target]) / (2 * h)
      np.testing.assert_allclose(sens[coords[:, 0], coords[:, 1]], fd, rtol=1e-5,
                                 atol=1e-7 * float(jnp.max(jnp.abs(sens))))
      assert float(jnp.max(jnp.abs(sens))) > 0


def test_sensitivity_of_a_shared_pass_equals_the_windows_own_gradient(tiny_variables, quick):
  with jax.enable_x64(True):
    config, variables = tiny_variables(4)
    layers = network.layers_from_variables(config, variables)
    windows = jax.random.normal(jax.random.key(5), (3, 206, 128), jnp.float64)
    targets = jnp.asarray([3, 7, 20])

    def run(layers, windows, targets):
      out = []
      for output in attribution.OUTPUTS:
        of_pass = jax.vmap(lambda w, t: attribution.sensitivity_of_pass(
            layers, *network.forward(layers, w), t, output=output))(windows, targets)
        direct = jax.vmap(lambda w, t: attribution.sensitivity_map(layers, w, t, output=output)
                          )(windows, targets)
        predicted = jax.vmap(lambda w: attribution.sensitivity_of_pass(
            layers, *network.forward(layers, w), output=output))(windows)
        out.append((of_pass, direct, predicted,
                    jax.vmap(lambda w: attribution.sensitivity_map(layers, w, output=output))(
                        windows)))
      return out

    for of_pass, direct, predicted, predicted_direct in quick(run, layers, windows, targets):
      assert float(jnp.max(jnp.abs(direct))) > 0
      np.testing.assert_allclose(of_pass, direct, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(predicted, predicted_direct, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match='unknown output'):
      attribution.sensitivity_of_pass(layers, *network.forward(layers, windows[0]),
                                      output='prob')


def test_sensitivity_of_a_saturated_softmax_equals_float64(random_layers, quick):
  # Logit margins of 5 to 150 nats: from about 17 nats y_t rounds to 1.0 in float32, and
  # `y_t (1 - y_t)` would drop the target's own term; the map must still be float64's. Past
  # ~80 nats the exact map falls below float32's smallest numbers (at 150: all zeros, which the
  # NAvAI pass counts and skips).
  with jax.enable_x64(True):
    layers = random_layers(7, batch_norm=True, bias=True)
    x = random_layers.input(8)
    logits = network.logits(layers, x)
    target = int(jnp.argmax(logits))
    margin = float(logits[target] - jnp.max(jnp.delete(logits, target)))

    def maps(layers, x):
      return (attribution.sensitivity_map(layers, x),
              attribution.sensitivity_of_pass(layers, *network.forward(layers, x)))

    to32 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)
    for m in (5.0, 17.0, 30.0, 45.0, 60.0, 150.0):
      top = layers[-1].replace(bias_D=layers[-1].bias_D.at[target].add(m - margin))
      saturated = layers[:-1] + (top,)
      exact, exact_of_pass = quick(maps, saturated, x)
      np.testing.assert_allclose(exact_of_pass, exact, rtol=1e-9, atol=1e-300)
      for got in quick(maps, to32(saturated), to32(x)):
        assert got.dtype == jnp.float32
        if m <= 60:
          assert float(jnp.max(jnp.abs(exact))) > 1e-35
          assert rel_error(got.astype(jnp.float64), exact) < 1e-3, m
        else:
          assert not np.any(np.asarray(got)) and float(jnp.max(jnp.abs(exact))) < 1e-60


def test_output_cotangent_is_the_softmax_jacobian_row():
  with jax.enable_x64(True):
    z = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    jac = jax.jacobian(jax.nn.softmax)(z)
    for t in range(4):
      np.testing.assert_allclose(attribution.output_cotangent(z, t, 'softmax'), jac[t],
                                 rtol=1e-12, atol=1e-15)
      np.testing.assert_array_equal(attribution.output_cotangent(z, t, 'logit'),
                                    np.eye(4)[t])


def test_integrated_gradients_on_a_homogeneous_net_is_gradient_times_input(random_layers, quick):
  """Bias-free ReLU nets are positively homogeneous: the gradient is constant along the path,
  so integrated gradients == gradient x input, summing to the logit (completeness)."""
  with jax.enable_x64(True):
    layers = random_layers(20, batch_norm=False, bias=False)
    x = random_layers.input(21)

    def run(layers, x):
      return (network.output(layers, network.forward(layers, x)[1])[0],
              attribution.integrated_gradients_map(layers, x, steps=4),
              attribution.gradient_x_input_map(layers, x))

    logits, ig, gxi = quick(run, layers, x)
    np.testing.assert_allclose(ig, gxi, rtol=1e-10, atol=1e-14)
    assert float(jnp.sum(ig)) == pytest.approx(float(jnp.max(logits)), rel=1e-10)


def test_integrated_gradients_completeness_with_bias_and_batch_norm(random_layers, quick):
  with jax.enable_x64(True):
    layers = random_layers(22, batch_norm=True, bias=True)
    x = random_layers.input(23)

    def run(layers, x):
      logits = lambda x: network.output(layers, network.forward(layers, x)[1])[0]
      t = jnp.argmax(logits(x))
      return logits(x)[t] - logits(jnp.zeros_like(x))[t], attribution.integrated_gradients_map(
          layers, x, steps=400)

    difference, ig = quick(run, layers, x)
    # The midpoint rule is exact between the ReLU kinks on the path and O(1/steps) across them.
    assert float(jnp.sum(ig)) == pytest.approx(float(difference), rel=1e-2)


def test_smoothgrad_is_seeded_and_reduces_to_sensitivity_without_noise(random_layers):
  with jax.enable_x64(True):
    layers = random_layers(24, batch_norm=True, bias=True)
    windows = jnp.stack([random_layers.input(25), random_layers.input(26)])
    run = lambda method, **kw: attribution.attribute_layers(method, layers, windows, **kw)
    np.testing.assert_allclose(run('smoothgrad', noise_std=0.0, samples=3),
                               run('sensitivity'), rtol=1e-12, atol=1e-15)
    first = run('smoothgrad', seed=1, samples=4)
    np.testing.assert_array_equal(first, run('smoothgrad', seed=1, samples=4))
    assert rel_error(first, run('smoothgrad', seed=2, samples=4)) > 1e-3
    assert rel_error(first[0], first[1]) > 1e-3  # Each window draws its own noise.


def test_guided_relu_passes_only_positive_gradients_at_positive_inputs():
  x = jnp.asarray([-1.0, -1.0, 0.0, 2.0, 2.0])
  g = jnp.asarray([1.0, -1.0, 1.0, 1.0, -1.0])
  y, vjp = jax.vjp(attribution.guided_relu, x)
  np.testing.assert_array_equal(y, jax.nn.relu(x))
  np.testing.assert_array_equal(vjp(g)[0], [0.0, 0.0, 0.0, 1.0, 0.0])


def test_guided_backprop(random_layers, quick):
  """Equals the gradient when every backward signal is positive (non-negative kernels above
  the first layer); otherwise it drops the negative ones."""
  with jax.enable_x64(True):
    layers = random_layers(27, batch_norm=False, bias=True)
    positive = tuple(l if i == 0 else l.replace(kernel_KxCxD=jnp.abs(l.kernel_KxCxD))
                     for i, l in enumerate(layers))
    x = random_layers.input(28)

    def run(positive, layers, x):
      return [(attribution.guided_backprop_map(net, x),
               attribution.sensitivity_map(net, x, output='logit')) for net in (positive, layers)]

    (guided_pos, grad_pos), (guided, grad) = quick(run, positive, layers, x)
    np.testing.assert_allclose(guided_pos, grad_pos, rtol=1e-12, atol=1e-15)
    assert rel_error(guided, grad) > 1e-3


def test_grad_cam_localizes_in_time_only(tiny_variables, quick):
  config, variables = tiny_variables(1, jnp.float32)
  layers = network.layers_from_variables(config, variables)
  assert attribution.default_grad_cam_layer(layers, 206) == 9  # Layer 10 has one step.
  x = jax.random.normal(jax.random.key(29), (206, 128))

  def run(layers, x):
    acts = network.forward(layers, x)[0][9]
    upper = lambda a: network.output(layers[9:], network.forward(layers[9:], a)[1])[0]
    t = jnp.argmax(upper(acts))
    grads = jax.grad(lambda a: upper(a)[t])(acts)
    return acts, grads, attribution.grad_cam_map(layers, x)

  acts, grads, cam = quick(run, layers, x)
  np.testing.assert_array_equal(cam, jnp.broadcast_to(cam[:, :1], cam.shape))
  expected_T = np.maximum(np.asarray(acts) @ np.asarray(grads).mean(0), 0)
  # Position t of layer 9 sees input frames [2t, 2t + 144): its centre is 2t + 71.5.
  centres = 2 * np.arange(len(expected_T)) + 71.5
  np.testing.assert_allclose(cam[:, 0], np.interp(np.arange(206), centres, expected_T),
                             rtol=1e-4, atol=1e-6)
  assert expected_T.max() > 0 and np.all(cam >= 0)


def test_attribute_rejects_bad_requests(tiny_variables):
  config, variables = tiny_variables(1, jnp.float32)
  windows = jnp.zeros((2, 206, 128))
  with pytest.raises(ValueError, match='unknown attribution method .*valid methods: '
                                       'sensitivity, lrp, gradient_x_input'):
    attribution.attribute('deconvnet', config, variables, windows)
  with pytest.raises(ValueError, match='unknown option.*steps.*valid options: output'):
    attribution.attribute('sensitivity', config, variables, windows, steps=3)
  with pytest.raises(ValueError, match="unknown output 'probability'"):
    attribution.attribute('sensitivity', config, variables, windows, output='probability')
  with pytest.raises(ValueError, match='unknown LRP rule'):
    attribution.attribute('lrp', config, variables, windows, rule='flat')
  with pytest.raises(ValueError, match=r'shape \[N, 206, 128\]'):
    attribution.attribute('sensitivity', config, variables, windows[:, :100])
  with pytest.raises(ValueError, match='expected 2 integer target classes'):
    attribution.attribute('sensitivity', config, variables, windows, targets=np.asarray([3]))
  with pytest.raises(ValueError, match='grad_cam layer must lie in'):
    attribution.grad_cam_map(network.layers_from_variables(config, variables), windows[0], layer=12)


def test_target_probability_is_the_softmax_of_the_window_logits(tiny_variables, quick):
  config, variables = tiny_variables(1, jnp.float32)
  windows = jax.random.normal(jax.random.key(4), (3, 206, 128))
  targets = np.asarray([5, 9, 28])
  got = attribution.target_probability(config, variables, windows, targets)
  logits, _ = model.apply_inference(config, variables, windows, padding='VALID')
  expected = jax.nn.softmax(logits[:, 0])[np.arange(3), targets]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
