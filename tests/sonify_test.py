"""Sonification: STFT round trip, Griffin-Lim, mel inversion, WAV output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from navai_jax.recognizer import features
from navai_jax.outputs import sonify
from navai_jax.configs import default


def _test_signal(num_samples=8064):
  t = np.arange(num_samples) / 16000
  x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
       + 0.2 * np.sin(2 * np.pi * 2500 * t) * (t > 0.2))
  return jnp.asarray(x, jnp.float32)


def test_istft_inverts_stft_away_from_the_edges():
  x = jax.random.normal(jax.random.key(0), (8064,))
  y = sonify.istft(sonify.stft(x, 512, 128), 512, 128)
  assert y.shape == x.shape
  np.testing.assert_allclose(y[32:-32], x[32:-32], atol=1e-4)


def test_stft_is_the_windowed_dft_of_each_frame():
  x = _test_signal()
  spectrum = np.asarray(sonify.stft(x, 512, 128))
  assert spectrum.shape == ((len(x) - 512) // 128 + 1, 257)
  n = np.arange(512)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)  # periodic Hann
  dft = np.exp(-2j * np.pi * np.outer(n, np.arange(257)) / 512)
  for t in (0, 7, len(spectrum) - 1):
    want = (np.asarray(x[t * 128:t * 128 + 512], np.float64) * hann) @ dft
    np.testing.assert_allclose(spectrum[t], want, rtol=1e-4, atol=2e-3)
  with pytest.raises(ValueError, match='at least 512 samples'):
    sonify.stft(x[:500], 512, 128)


def test_griffin_lim_recovers_a_known_magnitude():
  x = _test_signal()
  magnitude = jnp.abs(sonify.stft(x, 512, 128))
  y = sonify.griffin_lim(magnitude, jax.random.key(0), 512, 128, 100)
  convergence = float(sonify.spectral_convergence(magnitude, y, 512, 128))
  assert convergence < 0.05
  # Random phases alone are far off: the iterations did the work.
  noisy = sonify.griffin_lim(magnitude, jax.random.key(0), 512, 128, 0)
  assert float(sonify.spectral_convergence(magnitude, noisy, 512, 128)) > 4 * convergence


def test_mel_inversion_is_non_negative_and_reproduces_the_mel_power():
  config = default.get_config('tiny')
  bank = features.mel_filterbank(16000, 512, 128)
  power = jnp.abs(jax.random.normal(jax.random.key(1), (12, 257))) ** 2
  power_mel = power @ bank
  errors = {}
  for method in ('pinv', 'nnls'):
    linear = sonify.mel_to_linear_power(power_mel, config, method)
    assert linear.shape == (12, 257) and float(linear.min()) >= 0
    errors[method] = float(jnp.linalg.norm(linear @ bank - power_mel) / jnp.linalg.norm(power_mel))
  assert errors['nnls'] < 0.01 and errors['nnls'] < errors['pinv']
  with pytest.raises(ValueError, match='Unknown mel inversion'):
    sonify.mel_to_linear_power(power_mel, config, 'lstsq')


def test_sonify_writes_a_wav(tmp_path):
  config = default.get_config('tiny')
  frame = jax.random.normal(jax.random.key(2), (40, 128))
  audio = sonify.sonify(frame, config, iterations=10)
  assert audio.shape == ((40 - 1) * 128 + 512,) and audio.dtype == np.float32
  assert np.abs(audio).max() == pytest.approx(0.9)
  path = str(tmp_path / 'sub' / 'a.wav')
  sonify.write_wav(path, audio, 16000)
  read, rate = sf.read(path, dtype='float32')
  assert rate == 16000
  np.testing.assert_allclose(read, audio, atol=1 / 32768)
  with pytest.raises(ValueError, match='finite'):
    sonify.sonify(frame.at[3, 4].set(jnp.nan), config)
  with pytest.raises(ValueError, match=r'\[T, mel\]'):
    sonify.sonify(frame[0], config)
