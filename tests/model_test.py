"""Model: receptive field, layer shapes, VALID window == SAME utterance logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import model
from navai_jax.configs import default


@pytest.mark.parametrize('preset', default.PRESETS)
def test_receptive_field_is_206(preset):
  specs = model.layer_specs(default.get_config(preset).model)
  assert model.receptive_field(specs) == model.RECEPTIVE_FIELD == 206
  assert len(specs) == 12
  assert [s.kernel for s in specs] == [48] + [7] * 8 + [32, 1, 1]


def test_paper_table():
  specs = model.layer_specs(default.get_config('paper').model)
  assert [s.features for s in specs[:-1]] == [256] * 9 + [2048, 2048]
  assert specs[0].stride == 2 and all(s.stride == 1 for s in specs[1:])
  assert [s.batch_norm for s in specs] == [True] * 11 + [False]


def test_window_shapes_and_valid_equals_same(tiny_variables):
  # Non-trivial batch norm in inference mode: random running statistics and affine parameters.
  config, variables = tiny_variables(2, jnp.float32)
  x = jax.random.normal(jax.random.key(1), (1, 331, 128))
  logits, _ = model.apply_inference(config, variables, x)
  assert float(np.std(logits)) > 1e-2  # The comparison below is not between zeros.
  specs = model.layer_specs(config.model)
  assert logits.shape[1] == model.output_length(specs, 331) == 166
  for position in (51, 52, 75, 112):
    start = model.window_start(specs, position)
    window = x[:, start:start + 206]
    w_logits, inter = model.apply_inference(config, variables, window, padding='VALID')
    assert inter['layer_1']['act'].shape[1] == 80
    assert w_logits.shape[1] == 1
    np.testing.assert_allclose(w_logits[0, 0], logits[0, position], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('frames', [300, 301])
def test_utterance_alone_equals_utterance_beside_longer_ones(tiny_variables, frames):
  # Every layer zeroes its padded positions, so the utterance's logits are its own wherever it
  # is padded to (a bucket, a longer neighbour), at every position up to its end.
  config, variables = tiny_variables(2, jnp.float32)
  x = jax.random.normal(jax.random.key(3), (3, 420, 128))
  lengths = jnp.asarray([frames, 420, 377])
  x = jnp.where(model.padding_mask(lengths, 420)[..., None], x, 0.0)
  batched, inter = model.apply_inference(config, variables, x, frames_B=lengths)
  specs = model.layer_specs(config.model)
  for row, n in enumerate(np.asarray(lengths)):
    alone, _ = model.apply_inference(config, variables, x[row:row + 1, :n])
    u = model.output_length(specs, int(n))
    assert alone.shape[1] == u
    np.testing.assert_allclose(batched[row, :u], alone[0], rtol=1e-5, atol=1e-5)
  assert float(np.std(batched[0, :model.output_length(specs, frames)])) > 1e-2
  # Padded positions are zero at every layer.
  mask = np.asarray(model.padding_mask(lengths, 420))[:, ::2]
  for name in inter:
    assert not np.any(np.asarray(inter[name]['act'])[~mask]), name
  # Without the mask the padding leaks into the last ~0.6 s (the defect this guards against).
  unmasked, _ = model.apply_inference(config, variables, x[:1])
  u = model.output_length(specs, frames)
  assert np.abs(np.asarray(unmasked[0, :u]) - np.asarray(batched[0, :u])).max() > 1e-3
