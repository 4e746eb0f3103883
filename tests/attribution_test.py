"""Attribution methods: sensitivity == finite differences, integrated gradients on homogeneous
nets, SmoothGrad, guided backprop, Grad-CAM localizing in time only; Figure 2's core and the
shared figure helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax import attribution
from navai_jax import features
from navai_jax import frames
from navai_jax import lrp
from navai_jax import plotting
from navai_jax import vocab
from lrp_test import quick
from lrp_test import random_layers
from lrp_test import rel_error
from lrp_test import SMALL_BINS
from lrp_test import SMALL_FIELD
from lrp_test import tiny_variables


def small_input(seed):
  return jax.random.normal(jax.random.key(seed), (SMALL_FIELD, SMALL_BINS), jnp.float64)


def test_sensitivity_equals_central_finite_differences():
  with jax.enable_x64(True):
    config, variables = tiny_variables(1)
    layers = lrp.layers_from_variables(config, variables)
    x = jax.random.normal(jax.random.key(2), (206, 128), jnp.float64)
    rng = np.random.default_rng(3)
    coords = np.stack([rng.integers(0, 206, 12), rng.integers(0, 128, 12)], axis=1)
    coords[:6, 0] = rng.integers(90, 116, 6)  # Where the gradient is large.
    h = 1e-6
    steps = np.zeros((24, 206, 128))
    steps[np.arange(12), coords[:, 0], coords[:, 1]] = h
    steps[12 + np.arange(12), coords[:, 0], coords[:, 1]] = -h

    def run(layers, x, steps):
      logits = lambda x: lrp.output(layers, lrp.forward(layers, x)[1])[0]
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


def test_integrated_gradients_on_a_homogeneous_net_is_gradient_times_input():
  """Bias-free ReLU nets are positively homogeneous: the gradient is constant along the path,
  so integrated gradients == gradient x input, summing to the logit (completeness)."""
  with jax.enable_x64(True):
    layers = random_layers(20, batch_norm=False, bias=False)
    x = small_input(21)

    def run(layers, x):
      return (lrp.output(layers, lrp.forward(layers, x)[1])[0],
              attribution.integrated_gradients_map(layers, x, steps=4),
              attribution.gradient_x_input_map(layers, x))

    logits, ig, gxi = quick(run, layers, x)
    np.testing.assert_allclose(ig, gxi, rtol=1e-10, atol=1e-14)
    assert float(jnp.sum(ig)) == pytest.approx(float(jnp.max(logits)), rel=1e-10)


def test_integrated_gradients_completeness_with_bias_and_batch_norm():
  with jax.enable_x64(True):
    layers = random_layers(22, batch_norm=True, bias=True)
    x = small_input(23)

    def run(layers, x):
      logits = lambda x: lrp.output(layers, lrp.forward(layers, x)[1])[0]
      t = jnp.argmax(logits(x))
      return logits(x)[t] - logits(jnp.zeros_like(x))[t], attribution.integrated_gradients_map(
          layers, x, steps=400)

    difference, ig = quick(run, layers, x)
    # The midpoint rule is exact between the ReLU kinks on the path and O(1/steps) across them.
    assert float(jnp.sum(ig)) == pytest.approx(float(difference), rel=1e-2)


def test_smoothgrad_is_seeded_and_reduces_to_sensitivity_without_noise():
  with jax.enable_x64(True):
    layers = random_layers(24, batch_norm=True, bias=True)
    windows = jnp.stack([small_input(25), small_input(26)])
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


def test_guided_backprop():
  """Equals the gradient when every backward signal is positive (non-negative kernels above
  the first layer); otherwise it drops the negative ones."""
  with jax.enable_x64(True):
    layers = random_layers(27, batch_norm=False, bias=True)
    positive = tuple(l if i == 0 else l.replace(kernel_KxCxD=jnp.abs(l.kernel_KxCxD))
                     for i, l in enumerate(layers))
    x = small_input(28)

    def run(positive, layers, x):
      return [(attribution.guided_backprop_map(net, x),
               attribution.sensitivity_map(net, x, output='logit')) for net in (positive, layers)]

    (guided_pos, grad_pos), (guided, grad) = quick(run, positive, layers, x)
    np.testing.assert_allclose(guided_pos, grad_pos, rtol=1e-12, atol=1e-15)
    assert rel_error(guided, grad) > 1e-3


def test_grad_cam_localizes_in_time_only():
  config, variables = tiny_variables(1, jnp.float32)
  layers = lrp.layers_from_variables(config, variables)
  assert attribution.default_grad_cam_layer(layers, 206) == 9  # Layer 10 has one step.
  x = jax.random.normal(jax.random.key(29), (206, 128))

  def run(layers, x):
    acts = lrp.forward(layers, x)[0][9]
    upper = lambda a: lrp.output(layers[9:], lrp.forward(layers[9:], a)[1])[0]
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


def test_attribute_rejects_bad_requests():
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
    attribution.grad_cam_map(lrp.layers_from_variables(config, variables), windows[0], layer=12)


def test_introspect_letter_explains_the_first_frame_of_each_utterance():
  config, variables = tiny_variables(1, jnp.float32)
  frames_B = jnp.asarray([300, 280])
  x = jax.random.normal(jax.random.key(1), (2, 300, 128))
  x = jnp.where(jnp.arange(300)[None, :, None] < frames_B[:, None, None], x, 0.0)
  batches = [(x, frames_B, ['u0', 'u1'])]
  found = frames.collect(config, variables, x, frames_B, ['u0', 'u1'])
  positions = lambda u, l: [p for p, i, m in zip(found.positions_N, found.ids, found.letters)
                            if i == u and m == l]
  letter = next(l for l in found.letters if positions('u0', l) and len(positions('u1', l)) > 1)
  result = attribution.introspect_letter(config, variables, iter(batches), letter=letter,
                                         num_frames=3)
  assert list(result['ids']) == ['u0', 'u1']
  assert list(result['positions']) == [positions('u0', letter)[0], positions('u1', letter)[0]]
  target = vocab.TOKENS.index(letter)

  def reference(layers, windows):
    return (jax.vmap(lambda w: attribution.sensitivity_map(layers, w, target))(windows),
            jax.vmap(lambda w: lrp.relevance(layers, *lrp.forward(layers, w), target))(windows),
            jax.nn.softmax(jax.vmap(lambda w: lrp.output(layers, lrp.forward(layers, w)[1]))(
                windows)[:, 0])[:, target])

  sensitivity, relevance, probability = quick(
      reference, lrp.layers_from_variables(config, variables), jnp.asarray(result['windows']))
  np.testing.assert_allclose(result['sensitivity'], sensitivity, rtol=1e-5, atol=1e-9)
  assert rel_error(result['lrp'], relevance) <= 1e-4  # float32.
  np.testing.assert_allclose(result['probability'], probability, rtol=1e-5)
  only_u1 = attribution.introspect_letter(config, variables, batches, letter=letter,
                                          num_frames=2, utterance='u1')
  assert list(only_u1['ids']) == ['u1', 'u1']
  assert list(only_u1['positions']) == positions('u1', letter)[:2]
  missing = sorted(set('abcdefghijklmnopqrstuvwxyz') - set(found.letters))[0]
  with pytest.raises(ValueError, match=f"letter '{missing}' is never predicted in these "
                                       'utterances'):
    attribution.introspect_letter(config, variables, batches, letter=missing)
  with pytest.raises(ValueError, match=f"letter '{missing}' is never predicted in utterance "
                                       "'u0'"):
    attribution.introspect_letter(config, variables, batches, letter=missing, utterance='u0')
  with pytest.raises(ValueError, match="utterance 'u7' is not in the data"):
    attribution.introspect_letter(config, variables, batches, letter=letter, utterance='u7')


def test_figure_helpers(tmp_path):
  config, _ = tiny_variables(1, jnp.float32)
  m = np.asarray([[0.0, -4.0], [2.0, 1.0]])
  np.testing.assert_array_equal(plotting.scale_max_abs(m), m / 4)
  np.testing.assert_array_equal(plotting.scale_max_abs(np.zeros((2, 2))), np.zeros((2, 2)))
  positions, labels = plotting.hz_ticks(config)
  centres = features.mel_frequencies(config)
  np.testing.assert_allclose(np.interp(positions, np.arange(len(centres)), centres),
                             [250, 500, 1000, 2000, 4000], rtol=1e-9)
  assert labels == ['250', '500', '1k', '2k', '4k']
  rng = np.random.default_rng(0)
  windows, maps = rng.normal(size=(2, 206, 128)), rng.normal(size=(2, 206, 128))
  fig = plotting.overlay_grid(config, windows, {'a': maps, 'b': -maps}, ['one', 'two'],
                              path=tmp_path / 'grid.png')
  assert len(fig.axes) == 2 * 3 + 1 and (tmp_path / 'grid.png').stat().st_size > 0
  fig = plotting.map_grid(config, [[maps[0], maps[1]], [maps[0]]], ['r1', 'r2'], ['c1', 'c2'],
                          path=tmp_path / 'maps.png')
  assert (tmp_path / 'maps.png').stat().st_size > 0
  image = fig.axes[0].images[0]
  assert image.get_array().max() == pytest.approx(1.0) or image.get_array().min() == -1.0
