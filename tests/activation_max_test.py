"""Activation maximization: objective, penalty gradients, vmapped == looped, neuron choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import activation_max
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.configs import default


@pytest.fixture(scope='module')
def setup(tiny_variables):
  """The tiny model with non-trivial batch statistics, so inference-mode batch norm matters."""
  return tiny_variables(0, jnp.float32)


def few_steps(steps=40, **overrides):
  am = default.get_config('tiny').am
  am.steps = steps
  am.update(overrides)
  return am


def test_neuron_activation_matches_the_model(setup):
  config, variables = setup
  x = jax.random.normal(jax.random.key(2), (206, 128))
  _, inter = model.apply_inference(config, variables, x[None], padding='VALID')
  eps = config.model.bn_epsilon
  for layer in (1, 2, 9, 10, 11, 12):
    name = f'layer_{layer}'
    pre = np.asarray(inter[name]['pre'][0], np.float64)
    if layer == 12:
      bn = np.asarray(inter[name]['act'][0])
    else:
      p, s = variables['params'][f'bn_{layer}'], variables['batch_stats'][f'bn_{layer}']
      bn = (pre - s['mean']) / np.sqrt(s['var'] + eps) * p['scale'] + p['bias']
    for channel in (0, 5):
      np.testing.assert_allclose(
          activation_max.neuron_activation(config, variables, x, layer, channel, 'act'),
          inter[name]['act'][0, :, channel].mean(), rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(
          activation_max.neuron_activation(config, variables, x, layer, channel, 'bn'),
          bn[:, channel].mean(), rtol=1e-4, atol=1e-4)
  assert inter['layer_10']['act'].shape[1] == 1


def test_initial_input_is_glorot_uniform_and_keyed_by_neuron():
  limit = np.sqrt(6.0 / (206 + 128))
  key, _ = activation_max.neuron_keys(0, 2, 3)
  x = np.asarray(activation_max.initial_input(key, 128))
  assert x.shape == (206, 128)
  assert np.abs(x).max() <= limit and np.abs(x).max() > 0.99 * limit
  np.testing.assert_allclose(x.var(), limit ** 2 / 3, rtol=0.05)
  again, _ = activation_max.neuron_keys(0, 2, 3)
  np.testing.assert_array_equal(activation_max.initial_input(again, 128), x)
  for other in ((1, 2, 3), (0, 1, 3), (0, 2, 4)):
    k, _ = activation_max.neuron_keys(*other)
    assert not np.allclose(activation_max.initial_input(k, 128), x)


def test_objective_rises(setup):
  config, variables = setup
  am = few_steps(60)
  result = activation_max.maximize_neuron(config, variables, 2, 3, am)
  objective = np.asarray(result.objective_I)
  # Entry 0 is the objective of the initialization, computed independently here.
  x0 = result.initial_TxF
  expected = (activation_max.neuron_activation(config, variables, x0, 2, 3, 'bn')
              - 0.001 * jnp.sum(jnp.abs(x0)) - 0.001 * jnp.sum(x0 ** 2))
  np.testing.assert_allclose(objective[0], expected, rtol=1e-5)
  assert np.all(np.isfinite(objective))
  assert objective[-10:].mean() > objective[:10].mean() + 0.5
  final = (activation_max.neuron_activation(config, variables, result.input_TxF, 2, 3, 'bn')
           - activation_max.penalty(result.input_TxF, 0.001, 0.001))
  assert final > objective[-1] - 1e-3 * abs(objective[-1]) > objective[0]


@pytest.mark.parametrize('weights', [(1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0),
                                     (0, 0, 0, 1.0), (0.3, 0.2, 0.5, 0.7)])
def test_penalty_matches_formula_and_finite_differences(weights):
  l1, l2, tv_time, tv_freq = weights
  rng = np.random.default_rng(0)
  x = rng.normal(size=(206, 128))
  reference = (l1 * np.abs(x).sum() + l2 * (x ** 2).sum()
               + tv_time * np.abs(x[1:] - x[:-1]).sum()
               + tv_freq * np.abs(x[:, 1:] - x[:, :-1]).sum())
  with jax.enable_x64(True):
    f = lambda v: activation_max.penalty(v, l1, l2, tv_time, tv_freq)
    x64 = jnp.asarray(x, jnp.float64)
    np.testing.assert_allclose(f(x64), reference, rtol=1e-12)
    grad = np.asarray(jax.grad(f)(x64))
    h = 1e-6
    for _ in range(4):  # Random directions: every entry's derivative contributes.
      d = rng.normal(size=x.shape)
      fd = (f(x64 + h * d) - f(x64 - h * d)) / (2 * h)
      # The sums reach ~1e4, so rounding alone leaves ~1e-6 in the difference quotient.
      np.testing.assert_allclose(np.sum(grad * d), fd, rtol=1e-6, atol=1e-4)
    for t, m in ((0, 0), (100, 64), (205, 127)):  # Single entries, edges included.
      e = np.zeros_like(x)
      e[t, m] = 1.0
      fd = (f(x64 + h * e) - f(x64 - h * e)) / (2 * h)
      np.testing.assert_allclose(grad[t, m], fd, rtol=1e-6, atol=1e-4)


def test_vmapped_equals_looped(setup):
  config, variables = setup
  # Jitter and total variation on, so per-neuron step keys are exercised too.
  am = few_steps(20, jitter=5, tv_time=0.01, tv_freq=0.01)
  channels = [0, 3, 7]
  looped = [activation_max.maximize_neuron(config, variables, 2, c, am) for c in channels]
  for batch_size in (None, 2):
    many = activation_max.maximize_neurons(config, variables, 2, channels, am,
                                           batch_size=batch_size)
    assert many.input_TxF.shape == (3, 206, 128) and many.objective_I.shape == (3, 20)
    for i, one in enumerate(looped):
      np.testing.assert_array_equal(many.initial_TxF[i], one.initial_TxF)
      np.testing.assert_allclose(many.input_TxF[i], one.input_TxF, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(many.objective_I[i], one.objective_I, rtol=1e-4, atol=1e-5)
  assert not np.allclose(looped[0].input_TxF, looped[1].input_TxF)


def test_output_neuron_am_raises_the_letter_logit(setup):
  config, variables = setup
  token = vocab.letter_id('a')
  result = activation_max.maximize_neuron(config, variables, 12, token, few_steps(50))
  logit = lambda x: model.apply_inference(config, variables, x[None], padding='VALID')[0][0, 0]
  before, after = logit(result.initial_TxF), logit(result.input_TxF)
  np.testing.assert_allclose(result.activation_I[0], before[token], rtol=1e-5, atol=1e-5)
  assert after[token] > before[token] + 1.0


def test_bn_objective_moves_a_neuron_that_act_leaves_silent(setup):
  config, variables = setup
  # Channel 0 of layer 11 fires only above a batch-norm output of 0; shift it well below.
  params = jax.tree.map(lambda a: a, variables['params'])
  params['bn_11']['bias'] = params['bn_11']['bias'].at[0].set(-5.0)
  silent = {'params': params, 'batch_stats': variables['batch_stats']}
  act = activation_max.maximize_neuron(config, silent, 11, 0, few_steps(60, objective_point='act'))
  bn = activation_max.maximize_neuron(config, silent, 11, 0, few_steps(60, objective_point='bn'))
  np.testing.assert_array_equal(act.activation_I, 0.0)  # ReLU: zero gradient throughout.
  assert np.sum(np.abs(act.input_TxF)) < np.sum(np.abs(act.initial_TxF))  # Penalties only.
  assert bn.activation_I[-1] > bn.activation_I[0] + 0.5


def predicting(variables, letter):
  """The variables with the output bias of `letter` raised so that every frame predicts it."""
  params = jax.tree.map(lambda a: a, variables['params'])
  token = vocab.letter_id(letter)
  params['conv_12']['bias'] = params['conv_12']['bias'].at[token].add(100.0)
  return {'params': params, 'batch_stats': variables['batch_stats']}


def test_choose_neurons_picks_most_active_channels(setup):
  config, variables = setup
  frame = jax.random.normal(jax.random.key(3), (206, 128))
  token = vocab.letter_id('e')
  predicts_e = predicting(variables, 'e')
  chosen = activation_max.choose_neurons(config, predicts_e, frame, 'e')
  assert sorted(chosen) == list(range(1, 13)) and chosen[12] == token
  specs = model.layer_specs(config.model)
  for layer in (1, 2, 9, 10, 11):
    # Direct computation, through the pure per-channel path rather than the Linen module.
    means = [activation_max.neuron_activation(config, predicts_e, frame, layer, c, 'act')
             for c in range(specs[layer - 1].features)]
    assert chosen[layer] == int(np.argmax(means))
    assert means[chosen[layer]] > 0
  with pytest.raises(ValueError, match="predicted as 'e', not 'a'"):
    activation_max.choose_neurons(config, predicts_e, frame, 'a')


def test_optimal_inputs_for_letter(setup):
  config, variables = setup
  frame = jax.random.normal(jax.random.key(4), (206, 128))
  token = vocab.letter_id('a')
  v = predicting(variables, 'a')
  out = activation_max.optimal_inputs_for_letter(config, v, frame, 'a', (1, 12), few_steps(3))
  chosen = activation_max.choose_neurons(config, v, frame, 'a')
  assert list(out) == [1, 12] and out[12][0] == token and out[1][0] == chosen[1]
  assert out[1][1].input_TxF.shape == (206, 128)


def test_bad_input_raises(setup):
  config, variables = setup
  x = jnp.zeros((206, 128))
  with pytest.raises(ValueError, match='objective_point'):
    activation_max.maximize_neuron(config, variables, 1, 0, few_steps(objective_point='relu'))
  with pytest.raises(ValueError, match='layer must be in 1..12'):
    activation_max.maximize_neuron(config, variables, 13, 0)
  with pytest.raises(ValueError, match=r'channels \[8\] out of range for layer 1'):
    activation_max.maximize_neurons(config, variables, 1, [0, 8])
  with pytest.raises(ValueError, match='takes one channel'):
    activation_max.maximize_neuron(config, variables, 1, [0, 1])
  with pytest.raises(ValueError, match='config.am.steps must be >= 1, got 0'):
    activation_max.maximize_neuron(config, variables, 1, 0, few_steps(0))
  with pytest.raises(ValueError, match='jitter'):
    activation_max.maximize_neuron(config, variables, 1, 0, few_steps(jitter=-1))
  with pytest.raises(ValueError, match='x_TxF must have shape'):
    activation_max.neuron_activation(config, variables, x[:100], 1, 0)
  with pytest.raises(ValueError, match="is not a letter 'a'..'z'"):
    activation_max.choose_neurons(config, variables, x, 'A')
  with pytest.raises(ValueError, match='frame_WxF must have shape'):
    activation_max.choose_neurons(config, variables, x[:, :64], 'a')


@pytest.mark.parametrize('preset', ['small', 'paper'])
def test_the_papers_settings_are_the_defaults(setup, preset):
  """Paper §3.2: a Xavier-uniform [206, 128] start, Adam at 0.05 for 250 steps, L1 and L2
  penalties of 0.001 (L2 as 0.001 * sum x^2, Keras's regularizer; TensorFlow's `l2_loss` would
  be half of it). The first step is replayed by hand: Adam's first update is the learning
  rate times g / (|g| + 1e-8) for the gradient g of the objective."""
  am = default.get_config(preset).am
  assert (am.steps, am.learning_rate, am.l1, am.l2) == (250, 0.05, 0.001, 0.001)
  assert am.tv_time == am.tv_freq == am.jitter == 0
  config, variables = setup
  one = default.get_config(preset).am
  one.steps = 1
  result = activation_max.maximize_neuron(config, variables, 2, 3, one)
  x0 = result.initial_TxF
  key, _ = activation_max.neuron_keys(am.seed, 2, 3)
  np.testing.assert_array_equal(x0, activation_max.initial_input(key, 128))

  def objective(x):
    return (activation_max.neuron_activation(config, variables, x, 2, 3, am.objective_point)
            - 0.001 * jnp.sum(jnp.abs(x)) - 0.001 * jnp.sum(x ** 2))

  g = jax.grad(objective)(x0)
  np.testing.assert_allclose(result.input_TxF, x0 + 0.05 * g / (jnp.abs(g) + 1e-8),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(result.objective_I[0], objective(x0), rtol=1e-5)
