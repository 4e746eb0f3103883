"""Figure 2 end to end: the files hold the sensitivity and LRP of the frames found, and the
conditional maps of the channels that carry each frame's LRP evidence."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import concepts
from navai_jax.introspection import lrp
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.stages import figure2


def test_figure2_files_hold_the_maps_of_the_found_frames(stage_run, quick):
  root, config, variables = stage_run
  out = str(root / 'figure2')
  result = figure2.run(config, variables, 7, out, split='dev', letter='i', num_frames=2)
  assert len(result['windows']) == 2 and (Path(out) / 'figure2_i.png').exists()
  saved = np.load(Path(out) / 'figure2_i.npz')
  target = vocab.letter_id('i')
  # The saved sensitivity is the gradient of the letter's softmax output: central differences
  # in float64 where it is largest (an independent check of the maps the file holds).
  sensitivity = saved['sensitivity'][0]
  with jax.enable_x64(True):
    layers = network.layers_from_variables(
        config, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables))
    x = jnp.asarray(saved['windows'][0], jnp.float64)
    prob = jax.jit(lambda x: jax.nn.softmax(network.logits(layers, x))[target])
    flat = np.argsort(-np.abs(sensitivity).ravel())[:6]
    for t, f in zip(*np.unravel_index(flat, sensitivity.shape)):
      step = jnp.zeros_like(x).at[t, f].set(1e-4)
      fd = (prob(x + step) - prob(x - step)) / 2e-4
      assert float(fd) == pytest.approx(float(sensitivity[t, f]), rel=1e-3)
    # The saved LRP map is the paper's rule in its literal form (eqs. 3-4 written out).
    literal = jax.jit(lambda x: lrp.relevance(layers, *network.forward(layers, x),
                                              jnp.asarray(target), rule='paper',
                                              form='literal'))(x)
  # Float32 against float64: a few units near zero move eq. 3's ratio (`lrp_test`'s float64
  # test); measured here at most 1.2e-4 of the map's maximum.
  np.testing.assert_allclose(saved['lrp'][0], literal, rtol=1e-3, atol=1e-3)
  assert json.loads(str(saved['meta']))['checkpoint_step'] == 7
  assert list(saved['ids']) == sorted(set(saved['ids']))  # the first frame of each utterance

  # The channels figure: per frame the three layer-8 channels with the most LRP relevance,
  # each with its conditional map, as `concepts` gives it for that frame alone.
  assert (Path(out) / 'figure2_i_channels.png').exists()
  chosen = np.load(Path(out) / 'figure2_i_channels.npz')
  layers = network.layers_from_variables(config, variables)
  alone_fn = lambda window, masks: concepts.conditional_relevance(
      layers, *network.forward(layers, window), 8, masks, jnp.asarray(target), rule='paper')
  for n in range(2):
    relevance = chosen['channel_relevance'][n]
    assert list(chosen['channels'][n]) == list(np.argsort(-relevance)[:3])
    masks = concepts.channel_masks(jnp.asarray(chosen['channels'][n]), relevance.shape[0])
    alone, whole, _ = quick(alone_fn, jnp.asarray(saved['windows'][n]), masks)
    # Compiled whole against op by op in float32: the paper rule's ill-conditioned units round
    # apart (measured at most 6e-5 of the map's maximum), as for the LRP map above.
    scale = float(np.max(np.abs(whole)))
    np.testing.assert_allclose(chosen['maps'][n], alone, rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(whole, saved['lrp'][n], rtol=0, atol=1e-3 * scale)
  with pytest.raises(ValueError, match='CRP conditions on the channels of layers 1..11'):
    figure2.run(config, variables, 7, out, split='dev', letter='i', concept_layer=12)
