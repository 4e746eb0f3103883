"""Alignment: shifts move a known position to the centre; recut reads the utterance; positions
are the times of the maps' extremes."""

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import alignment


def test_shift_moves_known_position_to_centre_with_zeros():
  # Column t of the window holds t + 1, so every value names its source column.
  window = jnp.broadcast_to(jnp.arange(1.0, 207.0)[:, None], (206, 3))
  windows = jnp.stack([window, window, window])
  aligned = np.asarray(alignment.shift_to_centre(windows, jnp.array([140, 50, 103])))
  # p = 140: column 140 lands on 103; the last 37 columns are shifted-in zeros.
  np.testing.assert_array_equal(aligned[0, :169, 0], np.arange(38, 207))
  np.testing.assert_array_equal(aligned[0, 169:], 0)
  assert aligned[0, 103, 0] == 141
  # p = 50: column 50 lands on 103; the first 53 columns are zeros.
  np.testing.assert_array_equal(aligned[1, :53], 0)
  np.testing.assert_array_equal(aligned[1, 53:, 1], np.arange(1, 154))
  assert aligned[1, 103, 2] == 51
  np.testing.assert_array_equal(aligned[2], window)


def test_recut_reads_the_utterance_and_zeros_beyond_it():
  t, f = 300, 2
  x = jnp.broadcast_to(jnp.arange(1.0, t + 1)[:, None], (t, f))[None]
  frames_B = jnp.array([280])  # frames 280..299 are padding
  start, p = jnp.array([60]), jnp.array([150])
  recut = np.asarray(alignment.cut_aligned(x, frames_B, jnp.array([0]), start, p, 'recut'))[0, :, 0]
  zeros = np.asarray(alignment.cut_aligned(x, frames_B, jnp.array([0]), start, p, 'zeros'))[0, :, 0]
  # Column 103 shows utterance frame start + p = 210 (value 211) in both modes.
  assert recut[103] == zeros[103] == 211
  # Recut continues with the utterance up to its last frame 279, then zeros.
  np.testing.assert_array_equal(recut[:173], np.arange(108, 281))
  np.testing.assert_array_equal(recut[173:], 0)
  # Zeros mode stops where the original window [60, 266) ends.
  np.testing.assert_array_equal(zeros[:159], np.arange(108, 267))
  np.testing.assert_array_equal(zeros[159:], 0)
  # Where the window itself runs past the start, recut reads earlier frames; zeros does not.
  early = np.asarray(alignment.cut_aligned(x, frames_B, jnp.array([0]), jnp.array([60]),
                                       jnp.array([20]), 'recut'))[0, :, 0]
  np.testing.assert_array_equal(early[:23], 0)  # utterance frames -23..-1 do not exist
  np.testing.assert_array_equal(early[23:], np.arange(1, 184))


def test_alignment_positions_take_time_of_extremes():
  maps = np.zeros((3, 206, 4), np.float32)
  maps[0, 17, 2], maps[0, 190, 1] = 5.0, -3.0
  maps[1, 40, 0], maps[1, 41, 3] = 2.0, 2.0  # tie: the earliest element wins
  maps[1, 5, 0] = -1.0
  maps[2, 100, 3], maps[2, 3, 3] = 1.0, -1.0
  maps = jnp.asarray(maps)
  positions = lambda method, **maps_: alignment.alignment_positions(method, maps_, 3)
  np.testing.assert_array_equal(positions('sensitivity_max', sensitivity=maps), [17, 40, 100])
  np.testing.assert_array_equal(positions('sensitivity_min', sensitivity=maps), [190, 5, 3])
  np.testing.assert_array_equal(positions('lrp_max', lrp=maps), [17, 40, 100])
  np.testing.assert_array_equal(alignment.alignment_positions('none', {}, 2), [103, 103])
  assert alignment.maps_needed(('none', 'sensitivity_min', 'lrp_max')) == {'sensitivity', 'lrp'}
  with pytest.raises(ValueError, match='Unknown alignment method'):
    positions('lrp_min', lrp=maps)
  with pytest.raises(ValueError, match='needs its attribution map'):
    positions('lrp_max', sensitivity=maps)
  with pytest.raises(ValueError, match='Unknown fill'):
    alignment.cut_aligned(maps, jnp.array([206] * 3), jnp.arange(3), jnp.zeros(3, int),
                      jnp.zeros(3, int), 'mirror')
