"""Augmentation: masks of bounded width, noise with its std, the VTLP warp formula, keyed; of
the sound: speed by the interpolation formula, rooms by direct convolution, noise at its SNR."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.training import augment
from navai_jax.training import train
from navai_jax.recognizer import features
from navai_jax.configs import default


def _features(key, frames):
  x = jax.random.normal(key, (len(frames), 60, 128)) + 3.0  # No value is 0 by chance.
  valid = jnp.arange(60)[None] < jnp.asarray(frames)[:, None]
  return jnp.where(valid[..., None], x, 0.0), jnp.asarray(frames)


def test_frequency_masks_zero_whole_bands_of_bounded_width():
  x, frames = _features(jax.random.key(0), [60, 40, 25])
  y = augment.frequency_masks(x, jax.random.key(1), num_masks=2, max_width=12)
  masked_BxF = np.all(np.asarray(y) == 0, axis=1)
  changed = np.asarray(y != x)
  # Only whole bins (every frame) change, at most 2 bands of at most 12 bins each.
  np.testing.assert_array_equal(changed, masked_BxF[:, None, :] & np.asarray(x != 0))
  for row in masked_BxF:
    assert row.sum() <= 24
    runs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])) == 1)
    assert len(runs) <= 2
  assert masked_BxF.any()


def test_time_masks_stay_inside_each_utterance():
  x, frames = _features(jax.random.key(2), [60, 40, 25])
  for seed in range(5):
    y = np.asarray(augment.time_masks(x, frames, jax.random.key(seed), num_masks=2,
                                      max_width=20))
    masked_BxT = np.all(y == 0, axis=2)
    for row, n in enumerate(frames):
      hit = np.flatnonzero(masked_BxT[row, :n])
      assert hit.size <= 40
      np.testing.assert_array_equal(y[row, n:], 0.0)  # Padding untouched (still zero).
    np.testing.assert_array_equal(y[~masked_BxT], np.asarray(x)[~masked_BxT])


def test_noise_has_its_std_and_spares_padding():
  x, frames = _features(jax.random.key(3), [60, 40])
  y = augment.gaussian_noise(x, frames, jax.random.key(4), std=0.5)
  noise = np.asarray(y - x)
  assert abs(noise[0].std() - 0.5) < 0.02 and abs(noise[1, :40].std() - 0.5) < 0.03
  np.testing.assert_array_equal(noise[1, 40:], 0.0)


def test_warp_positions_follow_the_vtlp_formula():
  positions = np.asarray(augment.warp_positions(jnp.array([1.0, 0.9, 1.1]), 16000, 128))
  np.testing.assert_allclose(positions[0], np.arange(128), atol=1e-3)  # alpha = 1: identity.
  centre_hz = features.mel_frequencies(default.get_config('tiny'))
  step = features.hz_to_mel(8000.0) / 129
  for row, alpha in ((1, 0.9), (2, 1.1)):
    knee = augment.VTLP_BOUNDARY_HZ * min(alpha, 1.0) / alpha
    source_hz = np.where(centre_hz <= knee, alpha * centre_hz,
                         8000 - (8000 - alpha * knee) * (8000 - centre_hz) / (8000 - knee))
    wanted = np.clip(features.hz_to_mel(source_hz) / step - 1, 0, 127)
    np.testing.assert_allclose(positions[row], wanted, atol=2e-3)
    assert np.all(np.diff(positions[row]) > 0)  # Monotone: no bin is read twice.
  assert positions[2, -1] == 127  # Nyquist stays in place.


def test_frequency_warp_moves_a_tone_and_spares_padding():
  config = default.get_config('tiny')
  t = np.arange(16000) / 16000
  tone = np.sin(2 * np.pi * 2000 * t)
  audio = np.stack([tone, np.where(t < 0.5, tone, 0)])
  x, frames = features.log_mel(jnp.asarray(audio, jnp.float32), jnp.array([16000, 8000]), config)
  centre_hz = features.mel_frequencies(config)
  peaks = {}
  for seed in range(20):
    y = np.asarray(augment.frequency_warp(x, jax.random.key(seed), 0.2, 16000))
    np.testing.assert_array_equal(y[1, int(frames[1]):], 0.0)
    # Each output bin is the linear interpolation of the input at its warp position.
    alpha = jax.random.uniform(jax.random.key(seed), (2,), minval=0.8, maxval=1.2)
    positions = np.asarray(augment.warp_positions(alpha, 16000, 128))
    wanted = np.interp(positions[0], np.arange(128), np.asarray(x[0, 10]))
    np.testing.assert_allclose(y[0, 10], wanted, atol=1e-4)
    peaks[float(alpha[0])] = centre_hz[np.argmax(y[0].mean(0))]
  # alpha > 1 reads higher frequencies into lower bins: the tone moves down to ~2000 / alpha.
  for alpha, peak in peaks.items():
    assert abs(peak - 2000 / alpha) < 0.05 * 2000 / alpha, (alpha, peak)


def test_augment_is_a_function_of_the_key():
  config = default.get_config('tiny')
  x, frames = _features(jax.random.key(5), [60, 33])
  a = augment.augment(x, frames, jax.random.key(6), config.augment, 16000)
  b = augment.augment(x, frames, jax.random.key(6), config.augment, 16000)
  c = augment.augment(x, frames, jax.random.key(7), config.augment, 16000)
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  np.testing.assert_array_equal(np.asarray(a)[1, 33:], 0.0)


@pytest.mark.parametrize('field, value', [('freq_mask_width', 200), ('time_masks', -1),
                                          ('noise_std', -0.1), ('warp', 1.0), ('warp', -0.1),
                                          ('speeds', (0.9, 3.0)), ('reverb', 1.5),
                                          ('noise_snr_db', (30, 10)), ('rooms', 0)])
def test_augment_config_out_of_range(field, value):
  config = default.get_config('tiny')
  config.augment[field] = value
  with pytest.raises(ValueError, match=f'augment.{field}'):
    train.check_config(config)


def _sound(lengths, samples=4000, seed=0):
  rng = np.random.default_rng(seed)
  audio = rng.normal(0, 0.3, (len(lengths), samples)).astype(np.float32)
  audio[np.arange(samples)[None] >= np.asarray(lengths)[:, None]] = 0.0
  return audio, np.asarray(lengths, np.int32)


def test_speed_perturbation_is_linear_interpolation_at_the_new_rate():
  audio, lengths = _sound([4000, 2500, 1001])
  with jax.enable_x64():
    out, new = augment.speed_perturbation(jnp.asarray(audio, jnp.float64), jnp.asarray(lengths),
                                          jax.random.key(3), (0.9, 1.0, 1.1))
  out, new = np.asarray(out), np.asarray(new)
  assert out.shape == (3, int(np.ceil(4000 / 0.9)))
  for row in range(3):
    # The factor of this row, from its new length; the samples by NumPy's interpolation.
    speed = [r for r in (0.9, 1.0, 1.1) if int((lengths[row] - 1) / r) + 1 == new[row]][0]
    n = np.arange(new[row])
    np.testing.assert_allclose(out[row, :new[row]],
                               np.interp(n * speed, np.arange(4000), audio[row]), atol=1e-12)
    np.testing.assert_array_equal(out[row, new[row]:], 0.0)
  same, kept = augment.speed_perturbation(jnp.asarray(audio), jnp.asarray(lengths),
                                          jax.random.key(3), (1.0,))
  np.testing.assert_array_equal(same, audio)
  np.testing.assert_array_equal(kept, lengths)


def test_rooms_start_at_their_direct_sound_with_unit_energy():
  rirs = augment.room_impulse_responses(3, 0, 16000)
  assert rirs.shape == (3, 8000)
  np.testing.assert_array_equal(np.argmax(np.abs(rirs), axis=1), 0)
  np.testing.assert_allclose(np.sum(rirs.astype(np.float64)**2, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(augment.room_impulse_responses.__wrapped__(3, 0, 16000), rirs)
  assert np.any(augment.room_impulse_responses(3, 1, 16000) != rirs)


def test_reverberation_is_the_convolution_cut_to_the_utterance():
  audio, lengths = _sound([4000, 2500])
  rirs = np.random.default_rng(1).normal(size=(2, 300))
  with jax.enable_x64():
    key = jax.random.key(0)
    out = np.asarray(augment.reverberation(jnp.asarray(audio, jnp.float64),
                                           jnp.asarray(lengths), key, 1.0, jnp.asarray(rirs)))
  for row in range(2):
    n = lengths[row]
    direct = [np.convolve(audio[row, :n], r)[:n] for r in rirs]
    assert min(np.max(np.abs(out[row, :n] - d)) for d in direct) < 1e-9
    np.testing.assert_array_equal(out[row, n:], 0.0)
  dry = augment.reverberation(jnp.asarray(audio), jnp.asarray(lengths), key, 0.0,
                              jnp.asarray(rirs))
  np.testing.assert_array_equal(dry, audio)


def test_noise_at_snr_has_its_power_and_spares_padding():
  audio, lengths = _sound([40000, 30000], samples=40000)
  out = np.asarray(augment.noise_at_snr(jnp.asarray(audio), jnp.asarray(lengths),
                                        jax.random.key(2), (20.0, 20.0)), np.float64)
  for row, n in enumerate(lengths):
    noise = out[row, :n] - audio[row, :n]
    snr = 10 * np.log10(np.mean(audio[row, :n].astype(np.float64)**2) / np.mean(noise**2))
    assert snr == pytest.approx(20.0, abs=0.1)  # 30,000 draws: the power within 1%
    np.testing.assert_array_equal(out[row, n:], 0.0)


def test_sound_augmentation_off_leaves_the_audio_and_on_is_keyed():
  config = default.get_config('tiny')
  audio, lengths = _sound([4000, 2500])
  args = (jnp.asarray(audio), jnp.asarray(lengths))
  same = augment.waveform(*args, jax.random.key(1), config.augment, 16000, 0)
  np.testing.assert_array_equal(same[0], audio)
  config.augment.update(speeds=(0.9, 1.1), reverb=0.5, rooms=2, noise_snr_db=(10.0, 30.0))
  a = augment.waveform(*args, jax.random.key(1), config.augment, 16000, 0)
  b = augment.waveform(*args, jax.random.key(1), config.augment, 16000, 0)
  c = augment.waveform(*args, jax.random.key(2), config.augment, 16000, 0)
  np.testing.assert_array_equal(a[0], b[0])
  assert np.any(np.asarray(a[0]) != np.asarray(c[0]))
  for row in range(2):
    np.testing.assert_array_equal(np.asarray(a[0])[row, int(a[1][row]):], 0.0)
