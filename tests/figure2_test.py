"""Figure 2 end to end: the files hold the sensitivity and LRP of the frames found."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import lrp
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.stages import figure2


def test_figure2_files_hold_the_maps_of_the_found_frames(stage_run):
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
