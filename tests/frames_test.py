"""Frames (SPEC §4): which positions are frames, fixed-capacity selection, windows that reproduce
the utterance logits, activations sliced from the SAME pass == the window's VALID pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import frames
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.configs import default

CONFIG = default.get_config('tiny')
SPECS = model.layer_specs(CONFIG.model)


@pytest.fixture(scope='module')
def utterances(tiny_variables):
  """Two utterances (300 and 250 frames, zero-padded) and a `tiny` model with real stats."""
  _, variables = tiny_variables(1, jnp.float32)
  frames_B = jnp.asarray([300, 250])
  x = jax.random.normal(jax.random.key(1), (2, 300, 128))
  x = jnp.where(jnp.arange(300)[None, :, None] < frames_B[:, None, None], x, 0.0)
  return variables, x, frames_B


def test_frame_mask_is_letters_with_windows_inside():
  frames_B = np.asarray([300, 250, 150])
  u = model.output_length(SPECS, 300)
  logits = jax.random.normal(jax.random.key(2), (3, u, vocab.SIZE))
  valid, tokens = frames.frame_mask(CONFIG, logits, jnp.asarray(frames_B))
  expected = np.zeros((3, u), bool)
  for b in range(3):
    for p in range(u):
      start = 2 * p - 101
      token = int(np.argmax(logits[b, p]))
      expected[b, p] = vocab.is_letter(token) and start >= 0 and start + 206 <= frames_B[b]
  np.testing.assert_array_equal(valid, expected)
  np.testing.assert_array_equal(tokens, np.argmax(logits, -1))
  assert expected[:2].sum() > 10 and not expected[2].any()  # 150 frames hold no window.


def test_select_keeps_order_and_flags_filler():
  valid = jnp.asarray([[False, True, True, False], [True, False, False, True]])
  tokens = jnp.arange(8).reshape(2, 4) + 3
  sel = frames.select(valid, tokens, 6)
  np.testing.assert_array_equal(sel.utterance_N[:4], [0, 0, 1, 1])
  np.testing.assert_array_equal(sel.position_N[:4], [1, 2, 0, 3])
  np.testing.assert_array_equal(sel.token_N, [4, 5, 7, 10, vocab.BLANK, vocab.BLANK])
  np.testing.assert_array_equal(sel.valid_N, [True] * 4 + [False] * 2)
  small = frames.select(valid, tokens, 3)
  assert int(small.num_found) == 4 and bool(small.valid_N.all())
  np.testing.assert_array_equal(small.position_N, [1, 2, 0])


def test_selection_streams_through_a_jitted_scan(utterances):
  """Windows of selected frames folded in a `lax.scan`, as dataset-wide averages do."""
  variables, x, frames_B = utterances
  logits, _ = model.apply_inference(CONFIG, variables, x)
  valid, tokens = frames.frame_mask(CONFIG, logits, frames_B)

  @jax.jit
  def fold(x, valid, tokens):
    def step(total, b):
      sel = frames.select(valid[b][None], tokens[b][None], 64)
      windows = frames.gather_windows(CONFIG, x[b][None], sel.utterance_N, sel.position_N)
      return total + jnp.sum(windows * sel.valid_N[:, None, None], axis=0), sel.num_found
    return jax.lax.scan(step, jnp.zeros((206, 128)), jnp.arange(2))

  total, found = fold(x, valid, tokens)
  b, p = np.nonzero(np.asarray(valid))
  starts = 2 * p - 101
  expected = sum(np.asarray(x)[bb, s:s + 206] for bb, s in zip(b, starts))
  np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(found, np.asarray(valid).sum(1))


def test_frames_reproduce_the_utterance_logits(utterances):
  variables, x, frames_B = utterances
  found = frames.collect(CONFIG, variables, x, frames_B, ids=['u0', 'u1'])
  assert len(found) > 10 and set(found.ids) == {'u0', 'u1'}
  starts = model.window_start(SPECS, found.positions_N)
  assert np.all(starts >= 0) and np.all(starts + 206 <= np.asarray(frames_B)[found.utterance_N])
  for i in range(len(found)):
    np.testing.assert_array_equal(found.windows_NxWxF[i],
                                  x[found.utterance_N[i], starts[i]:starts[i] + 206])
  logits, _ = model.apply_inference(CONFIG, variables, x)
  w_logits, _ = model.apply_inference(CONFIG, variables, jnp.asarray(found.windows_NxWxF),
                                      padding='VALID')
  np.testing.assert_allclose(w_logits[:, 0], logits[found.utterance_N, found.positions_N],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.argmax(w_logits[:, 0], -1), found.tokens_N)
  assert all(vocab.is_letter(int(t)) for t in found.tokens_N)
  assert found.letters == [vocab.letter_of(int(t)) for t in found.tokens_N]


def test_sliced_activations_equal_the_window_pass(utterances):
  variables, x, frames_B = utterances
  _, intermediates = model.apply_inference(CONFIG, variables, x)
  utterance_N, position_N = jnp.asarray([0, 0, 1]), jnp.asarray([51, 97, 72])
  inputs, pre = frames.window_activations(CONFIG, x, intermediates, utterance_N, position_N)
  windows = frames.gather_windows(CONFIG, x, utterance_N, position_N)
  _, window_inter = model.apply_inference(CONFIG, variables, windows, padding='VALID')
  np.testing.assert_array_equal(inputs[0], windows)
  for i, spec in enumerate(SPECS):
    expected_pre = window_inter[spec.name]['pre']
    assert pre[i].shape == expected_pre.shape
    np.testing.assert_allclose(pre[i], expected_pre, rtol=1e-5, atol=1e-5)
    if i:
      np.testing.assert_allclose(inputs[i], window_inter[SPECS[i - 1].name]['act'], rtol=1e-5,
                                 atol=1e-5)
  assert pre[-1].shape == (3, 1, vocab.SIZE)


def test_of_letter_and_bad_inputs(utterances):
  variables, x, frames_B = utterances
  found = frames.collect(CONFIG, variables, x, frames_B)
  letter = found.letters[0]
  picked = frames.of_letter(found, letter)
  assert len(picked) == found.letters.count(letter) and set(picked.letters) == {letter}
  missing = sorted(set(vocab.LETTERS) - set(found.letters))[0]
  with pytest.raises(ValueError, match=f"letter '{missing}' is never predicted in these "
                                       'utterances'):
    frames.of_letter(found, missing)
  with pytest.raises(ValueError, match="'A' is not a letter 'a'..'z'"):
    frames.of_letter(found, 'A')
  with pytest.raises(ValueError, match=r'a window of shape \[206, 128\].*got \[206, 64\]'):
    frames.check_windows(CONFIG, np.zeros((206, 64)), batched=False)
  with pytest.raises(ValueError, match=r'windows of shape \[N, 206, 128\].*got \[206, 128\]'):
    frames.check_windows(CONFIG, np.zeros((206, 128)), batched=True)
  with pytest.raises(ValueError, match='2 utterance ids for 3 utterances'):
    frames.collect(CONFIG, variables, jnp.zeros((3, 300, 128)), jnp.asarray([300] * 3), ['a', 'b'])
  with pytest.raises(ValueError, match=r'features of shape \[B, T, 128\]'):
    frames.collect(CONFIG, variables, jnp.zeros((300, 128)), jnp.asarray([300]))


def test_find_letter_takes_the_first_frame_of_each_utterance_in_data_order(tiny_variables):
  config, variables = tiny_variables(1, jnp.float32)
  frames_B = jnp.asarray([300, 280])
  x = jax.random.normal(jax.random.key(1), (2, 300, 128))
  x = jnp.where(jnp.arange(300)[None, :, None] < frames_B[:, None, None], x, 0.0)
  batches = [(x, frames_B, ['u0', 'u1'])]
  found = frames.collect(config, variables, x, frames_B, ['u0', 'u1'])
  positions = lambda u, l: [p for p, i, m in zip(found.positions_N, found.ids, found.letters)
                            if i == u and m == l]
  letter = next(l for l in found.letters if positions('u0', l) and len(positions('u1', l)) > 1)
  first = frames.find_letter(config, variables, iter(batches), letter, 3)
  assert first.ids == ['u0', 'u1']
  assert list(first.positions_N) == [positions('u0', letter)[0], positions('u1', letter)[0]]
  np.testing.assert_array_equal(
      first.windows_NxWxF[1], frames.gather_windows(config, x, jnp.asarray([1]),
                                                    jnp.asarray(first.positions_N[1:]))[0])
  only_u1 = frames.find_letter(config, variables, batches, letter, 2, utterance='u1')
  assert only_u1.ids == ['u1', 'u1']
  assert list(only_u1.positions_N) == positions('u1', letter)[:2]
  every = [p for p, m in zip(found.positions_N, found.letters) if m == letter]
  second = frames.find_letter(config, variables, batches, letter, 1, skip=1,
                              first_per_utterance=False)
  assert list(second.positions_N) == every[1:2]
  missing = sorted(set(vocab.LETTERS) - set(found.letters))[0]
  with pytest.raises(ValueError, match=f"letter '{missing}' is never predicted in these "
                                       'utterances'):
    frames.find_letter(config, variables, batches, missing, 1)
  with pytest.raises(ValueError, match=f"letter '{missing}' is never predicted in utterance "
                                       "'u0'"):
    frames.find_letter(config, variables, batches, missing, 1, utterance='u0')
  with pytest.raises(ValueError, match="utterance 'u7' is not in the data"):
    frames.find_letter(config, variables, batches, letter, 1, utterance='u7')
  with pytest.raises(ValueError, match=f'has {len(every)} frames predicted as .*no frame number'):
    frames.find_letter(config, variables, batches, letter, 1, skip=len(every),
                       first_per_utterance=False)
  with pytest.raises(ValueError, match="'A' is not a letter"):
    frames.find_letter(config, variables, batches, 'A', 1)


def test_collect_some_reads_on_until_it_has_frames_and_says_when_there_are_none(utterances):
  variables, x, frames_B = utterances
  batch = (x, frames_B, ['u0', 'u1'])
  one = frames.collect(CONFIG, variables, *batch)
  assert len(one) > 0
  # A model that predicts blank everywhere has no frame at all.
  params = dict(variables['params'])
  params['conv_12'] = dict(params['conv_12'],
                           bias=jnp.where(jnp.arange(vocab.SIZE) == vocab.BLANK, 1e3, 0.0))
  silent = dict(variables, params=params)
  assert not len(frames.collect(CONFIG, silent, *batch))
  found = frames.collect_some(CONFIG, variables, [batch, batch, batch], count=len(one) + 1)
  assert len(found) == 2 * len(one)  # read two batches, not the third
  with pytest.raises(ValueError, match='predicts no letter .* of the 6 utterances read'):
    frames.collect_some(CONFIG, silent, [batch] * 3)
