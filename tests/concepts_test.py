"""Concept relevance: the conditional maps of a layer's channels sum to the unconditional map
under every rule, each channel's map conserves its relevance where the rule conserves, a
channel that carries everything gets the whole map, the fast form equals the literal one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import concepts
from navai_jax.introspection import lrp
from navai_jax.recognizer import network


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _pass(random_layers, seed=0, **kw):
  layers = random_layers(seed, **kw)
  inputs, pre = network.forward(layers, random_layers.input(seed))
  return layers, inputs, pre


@pytest.mark.parametrize('rule', lrp.RULES)
def test_maps_of_every_channel_sum_to_the_unconditional_map(random_layers, rule):
  # Layer 2 of 3: conditioned maps pass two layers down (layer 1: the tests below).
  layer = 2
  layers, inputs, pre = _pass(random_layers, batch_norm=True, bias=True)
  width = layers[layer - 1].kernel_KxCxD.shape[-1]
  masks = concepts.channel_masks(jnp.arange(width), width, jnp.float64)
  maps, full, _ = concepts.conditional_relevance(layers, inputs, pre, layer, masks, 2, rule=rule)
  np.testing.assert_allclose(full, lrp.relevance(layers, inputs, pre, 2, rule=rule),
                             rtol=1e-12, atol=1e-15)
  assert maps.shape == (width,) + full.shape
  np.testing.assert_allclose(jnp.sum(maps, axis=0), full, rtol=1e-10, atol=1e-13)
  assert np.count_nonzero(np.abs(maps).sum(axis=(1, 2)) > 0) > 1  # the evidence is shared
  # A set of channels is the sum of its members.
  both = concepts.conditional_relevance(layers, inputs, pre, layer, masks[:1] + masks[1:2], 2,
                                        rule=rule)[0][0]
  np.testing.assert_allclose(both, maps[0] + maps[1], rtol=1e-10, atol=1e-13)


def test_each_channel_map_conserves_that_channels_relevance_under_lrp_0(random_layers):
  layers, inputs, pre = _pass(random_layers, batch_norm=False, bias=False)
  width = layers[0].kernel_KxCxD.shape[-1]
  maps, full, per_channel = concepts.conditional_relevance(
      layers, inputs, pre, 1, concepts.channel_masks(jnp.arange(width), width, jnp.float64),
      1, rule='zero')
  np.testing.assert_allclose(jnp.sum(maps, axis=(1, 2)), per_channel, rtol=1e-10)
  logits = network.output(layers, pre)[0]
  np.testing.assert_allclose(jnp.sum(per_channel), logits[1], rtol=1e-10)
  np.testing.assert_allclose(jnp.sum(full), logits[1], rtol=1e-10)


@pytest.mark.parametrize('rule', ['paper', 'epsilon', 'alphabeta'])
def test_a_channel_that_carries_everything_gets_the_whole_map(random_layers, rule):
  layers = random_layers(3, batch_norm=True, bias=True)
  # Layer 2 reads channel 4 of layer 1 only: the other channels carry nothing to the output.
  second = layers[1]
  kernel = jnp.zeros_like(second.kernel_KxCxD).at[:, 4].set(second.kernel_KxCxD[:, 4])
  layers = (layers[0], second.replace(kernel_KxCxD=kernel), layers[2])
  inputs, pre = network.forward(layers, random_layers.input(3))
  width = layers[0].kernel_KxCxD.shape[-1]
  maps, full, per_channel = concepts.conditional_relevance(
      layers, inputs, pre, 1, concepts.channel_masks(jnp.arange(width), width, jnp.float64),
      0, rule=rule)
  assert np.abs(full).sum() > 0
  np.testing.assert_allclose(maps[4], full, rtol=1e-12, atol=1e-15)
  np.testing.assert_array_equal(np.delete(np.asarray(maps), 4, axis=0), 0.0)
  assert np.flatnonzero(np.asarray(per_channel)).tolist() == [4]


def test_fast_form_equals_the_literal_one(random_layers):
  layers, inputs, pre = _pass(random_layers, seed=5, batch_norm=True, bias=True)
  masks = concepts.channel_masks(jnp.array([0, 3, 5]), 6, jnp.float64)
  for rule in ('paper', 'zplus'):
    fast = concepts.conditional_relevance(layers, inputs, pre, 2, masks, 1, rule=rule)
    literal = concepts.conditional_relevance(layers, inputs, pre, 2, masks, 1, rule=rule,
                                             form='literal')
    for a, b in zip(fast, literal):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_conditions_that_cannot_be_met_are_named(random_layers):
  layers, inputs, pre = _pass(random_layers, batch_norm=True, bias=True)
  masks = concepts.channel_masks(jnp.arange(2), 6, jnp.float64)
  for layer in (0, 3, 1.5):
    with pytest.raises(ValueError, match=r'CRP conditions on the channels of layers 1\.\.2 \(the '
                                         r'last one is the output\), got layer'):
      concepts.conditional_relevance(layers, inputs, pre, layer, masks)
  with pytest.raises(ValueError, match=r'layer 1 has channels 0\.\.5; got \[6, -1\]'):
    concepts.check_condition(layers, 1, jnp.array([0, 6, -1]))
  with pytest.raises(ValueError, match="unknown LRP rule 'gradient'"):
    concepts.conditional_relevance(layers, inputs, pre, 1, masks, rule='gradient')
  concepts.check_condition(layers, 2, jnp.arange(4))  # layer 2's channels 0..3: no error


def test_frames_at_once_equal_each_frame_alone(random_layers):
  layers = random_layers(1, batch_norm=True, bias=True)
  windows = jnp.stack([random_layers.input(s) for s in (1, 2, 3)])
  masks = concepts.channel_masks(jnp.array([1, 2]), 6, jnp.float64)
  maps, full, per_channel = concepts.conditional_maps(layers, windows, jnp.array([0, 2, 3]), 2,
                                                      masks, rule='epsilon')
  assert maps.shape == (3, 2) + windows.shape[1:]
  for n, target in enumerate((0, 2, 3)):
    inputs, pre = network.forward(layers, windows[n])
    alone = concepts.conditional_relevance(layers, inputs, pre, 2, masks, target,
                                           rule='epsilon')
    for a, b in zip((maps[n], full[n], per_channel[n]), alone):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_shares_fold_per_class_and_importance_ranks_and_counts_channels():
  sums = concepts.Shares(jnp.zeros(2), jnp.zeros((2, 3)))
  relevance = jnp.array([[3.0, 1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, -2.0], [5.0, 0, 0]])
  shares = concepts.channel_shares(relevance)
  np.testing.assert_allclose(shares[0], [0.6, 0.2, -0.2])
  np.testing.assert_array_equal(shares[1], 0.0)  # no relevance: no share
  sums = concepts.fold_shares(sums, shares, jnp.array([0, 0, 0, -1]), jnp.array([1, 1, 0, 1],
                                                                               bool))
  np.testing.assert_array_equal(sums.count, [2, 0])  # a left-out frame, a frame of no class
  found = concepts.importance(sums)
  np.testing.assert_allclose(found['share'][0], [0.3, 0.1, -0.1])
  assert found['ranking'][0].tolist() == [0, 1, 2]
  np.testing.assert_allclose(found['effective_channels'], [1 / (0.6**2 + 0.2**2 + 0.2**2), 0])
  table = concepts.markdown(concepts.arrays([sums], [sums], (4,), 'ab', ('iy', 'ae')), top=2)
  assert '| letter a | 2 | 0 (0.300), 1 (0.100) | 2.3 |' in table
  assert '| phoneme iy | 2 |' in table and '| letter b |' not in table
