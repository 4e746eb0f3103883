"""Figure 1 end to end: the files hold inputs that raise their neurons."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.stages import figure1


def test_figure1_files_hold_the_optimized_inputs(stage_run):
  root, config, variables = stage_run
  out = str(root / 'figure1')
  frame, results = figure1.run(config, variables, 7, out, split='dev', letter='i')
  assert list(results) == [1, 2, 11, 12] and results[12][0] == vocab.letter_id('i')
  saved = np.load(Path(out) / 'figure1_i.npz')
  # The saved input raises its neuron: its objective, computed here from the model's own VALID
  # pass and the penalties written out, is above that of the start.
  def objective(x, channel):
    _, inter = model.apply_inference(config, variables, jnp.asarray(x)[None], padding='VALID')
    z = inter['layer_2']['pre'][0, :, channel]
    p, st = variables['params']['bn_2'], variables['batch_stats']['bn_2']
    bn = (z - st['mean'][channel]) / jnp.sqrt(st['var'][channel] + config.model.bn_epsilon) * (
        p['scale'][channel]) + p['bias'][channel]
    return float(bn.mean() - 0.001 * np.abs(x).sum() - 0.001 * (np.asarray(x) ** 2).sum())

  channel = results[2][0]
  assert config.am.objective_point == 'bn'
  assert saved['layer_2_objective_I'][0] == pytest.approx(
      objective(saved['layer_2_initial_TxF'], channel), rel=1e-4, abs=1e-5)
  assert objective(saved['layer_2_input_TxF'], channel) > saved['layer_2_objective_I'][-1] > (
      saved['layer_2_objective_I'][0])
  np.testing.assert_array_equal(saved['frame_WxF'], frame.windows_NxWxF[0])
  assert saved['layer_12_objective_I'].shape == (5,)
