"""Log-mel features: the mel filterbank against the Slaney formula, the STFT against a direct DFT,
the top_db floor, per-utterance mean 0 / std 1, and frame counts."""

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import features
from navai_jax.configs import default

CONFIG = default.get_config('tiny')


def _slaney_mel(f):
  """Slaney's mel scale written out: 3 mel per 200 Hz below 1 kHz, log steps of 6.4^(1/27)."""
  f = np.asarray(f, np.float64)
  return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))


def test_mel_scale_is_slaney_and_inverts():
  f = np.array([0.0, 200.0, 999.0, 1000.0, 2000.0, 7999.0])
  np.testing.assert_allclose(features.hz_to_mel(f), _slaney_mel(f), rtol=1e-12)
  np.testing.assert_allclose(features.mel_to_hz(features.hz_to_mel(f)), f, rtol=1e-9, atol=1e-9)


def test_mel_filterbank_equals_triangles_of_the_direct_formula():
  bank = features.mel_filterbank(16000, 512, 128)
  assert bank.shape == (257, 128) and bank.dtype == np.float32
  fft_hz = np.arange(257) * 16000 / 512
  edges_mel = np.linspace(0, _slaney_mel(8000), 130)
  # The edges back in Hz, by inverting the formula above.
  edges = np.where(edges_mel < 15, edges_mel * 200 / 3, 1000 * 6.4 ** ((edges_mel - 15) / 27))
  for m in (10, 40, 80, 127):
    lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
    up, down = (fft_hz - lo) / (centre - lo), (hi - fft_hz) / (hi - centre)
    want = np.maximum(0, np.minimum(up, down)) * 2 / (hi - lo)  # area-normalized triangle
    np.testing.assert_allclose(bank[:, m], want, rtol=1e-5, atol=1e-9)
  # Filters too narrow to catch an FFT bin get the bin nearest their centre.
  assert (bank.sum(0) > 0).all()
  np.testing.assert_allclose(features.bin_centres_hz(16000, 128), edges[1:-1], rtol=1e-9)


def test_stft_is_the_hann_windowed_dft():
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(2, 2048)).astype(np.float32)
  spectrum = np.asarray(features.stft(jnp.asarray(audio), 512, 128))
  assert spectrum.shape == (2, 13, 257)
  n = np.arange(512)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)
  dft = np.exp(-2j * np.pi * np.outer(n, np.arange(257)) / 512)
  want = (audio[1, 5 * 128:5 * 128 + 512].astype(np.float64) * hann) @ dft
  np.testing.assert_allclose(spectrum[1, 5], want, rtol=1e-4, atol=1e-3)


def _log_mel_by_hand(audio, top_db):
  """Power, mel, dB, the top_db floor and the z-normalization of one utterance, in NumPy."""
  frames = np.stack([audio[t * 128:t * 128 + 512] for t in range((len(audio) - 512) // 128 + 1)])
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
  power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
  db = 10 * np.log10(np.maximum(power @ features.mel_filterbank(16000, 512, 128), 1e-10))
  db = np.maximum(db, db.max() - top_db)
  return (db - db.mean()) / np.sqrt(db.var() + 1e-8), np.sqrt(db.var() + 1e-8)


def test_log_mel_is_floored_and_z_normalized_per_utterance():
  rng = np.random.default_rng(1)
  loud = rng.normal(size=12800) * 0.3
  loud[3000:6000] = 0.0  # digital silence: -inf dB without the floor
  quiet = rng.normal(size=9000) * 1e-3
  audio = np.zeros((2, 12800), np.float32)
  audio[0], audio[1, :9000] = loud, quiet
  x, frames_B = features.log_mel(jnp.asarray(audio), jnp.asarray([12800, 9000]), CONFIG)
  x, frames_B = np.asarray(x), np.asarray(frames_B)
  assert list(frames_B) == [97, 67] and x.shape == (2, 97, 128)
  for b, n in enumerate(frames_B):
    real = x[b, :n]
    assert abs(real.mean()) < 1e-4 and abs(real.std() - 1) < 1e-3
    want, _ = _log_mel_by_hand(audio[b, :12800 if b == 0 else 9000].astype(np.float64), 80.0)
    np.testing.assert_allclose(real, want, rtol=1e-3, atol=2e-3)
  assert (x[1, 67:] == 0).all()  # frames past an utterance's end are exactly zero
  # The floor: the silent frames sit exactly top_db below the utterance's maximum.
  _, std_db = _log_mel_by_hand(loud, 80.0)
  real = x[0, :97]
  silent = [t for t in range(97) if t * 128 >= 3000 and t * 128 + 512 <= 6000]
  assert len(silent) > 10
  np.testing.assert_allclose(real[silent], real.min(), atol=1e-5)
  assert (real.max() - real.min()) * std_db == pytest.approx(80.0, abs=0.05)


def test_frame_counts_and_times():
  assert features.num_frames(512, 512, 128) == 1
  assert features.num_frames(511, 512, 128) == 0
  np.testing.assert_array_equal(features.num_frames(np.array([640, 26752]), 512, 128), [2, 206])
  assert features.samples_for_frames(206, 512, 128) == 26752
  assert features.frame_to_seconds(0, CONFIG) == 256 / 16000
  assert features.frame_to_seconds(10, CONFIG) == (1280 + 256) / 16000


def test_per_bin_normalization_takes_away_each_bins_mean_with_one_std():
  rng = np.random.default_rng(2)
  audio = np.zeros((2, 12800), np.float32)
  audio[0] = rng.normal(size=12800) * 0.3
  audio[1, :9000] = rng.normal(size=9000) * 0.01
  lengths = jnp.asarray([12800, 9000])
  config = default.get_config('tiny')
  config.features.normalize = 'per_bin'
  x, frames_B = features.log_mel(jnp.asarray(audio), lengths, config)
  x = np.asarray(x)
  for b, n in enumerate(np.asarray(frames_B)):
    # By hand: the floored dB (the same as the one-mean path's before its normalization),
    # each bin's mean over the utterance's frames taken away, one std over all of them.
    want, std_db = _log_mel_by_hand(audio[b, :n * 128 + 384].astype(np.float64), 80.0)
    db = want * std_db
    db = db - db.mean(axis=0)
    np.testing.assert_allclose(x[b, :n], db / np.sqrt(db.var() + 1e-8), rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(x[b, :n].mean(axis=0), 0.0, atol=1e-4)
  assert (x[1, 67:] == 0).all()  # frames past an utterance's end are exactly zero
  alone = features.log_mel(jnp.asarray(audio[1:, :9000]), lengths[1:], config)[0]
  np.testing.assert_allclose(alone[0], x[1, :67], atol=1e-5)  # alone == in a batch


@pytest.mark.parametrize('normalize', features.NORMALIZATIONS)
def test_speech_gate_takes_the_statistics_over_speech_alone(normalize):
  rng = np.random.default_rng(3)
  audio = np.zeros((2, 16000), np.float32)
  audio[:, :6400] = rng.normal(size=6400) * 0.3  # speech, then digital silence ...
  lengths = jnp.asarray([8000, 16000])  # ... of 1,600 samples, or of 9,600
  config = default.get_config('tiny')
  config.features.normalize = normalize
  every = np.asarray(features.log_mel(jnp.asarray(audio), lengths, config)[0])
  config.features.speech_gate_db = 40.0
  x, frames_B = features.log_mel(jnp.asarray(audio), lengths, config)
  x, n = np.asarray(x), int(frames_B[0])
  # Silence does not move the speech's features: the same frames, with more silence after them.
  np.testing.assert_allclose(x[1, :n], x[0, :n], atol=1e-5)
  assert np.abs(every[1, :n] - every[0, :n]).max() > 0.1  # which every frame's statistics do
  # By hand: the floored dB, its mean and std over the frames whose loudest bin is within 40 dB
  # of the top (for 'per_bin' one mean per bin), every real frame normalized by them.
  for b, length in enumerate(np.asarray(lengths)):
    frames = int(frames_B[b])
    want, std_db = _log_mel_by_hand(audio[b, :length].astype(np.float64), 80.0)
    db = want * std_db
    speech = db.max(axis=1) >= db.max() - 40.0
    assert 0 < speech.sum() < frames
    mean = db[speech].mean(axis=0) if normalize == 'per_bin' else db[speech].mean()
    var = np.square(db[speech] - mean).mean()
    np.testing.assert_allclose(x[b, :frames], (db - mean) / np.sqrt(var + 1e-8), rtol=1e-3,
                               atol=2e-3)
  assert (x[0, n:] == 0).all()  # frames past an utterance's end are exactly zero
