"""Log-mel features of SPEC §1, computed in JAX so they run inside jitted steps on any device.

16 kHz audio, 512-sample Hann windows (32 ms) every 128 samples (8 ms), power spectrum,
128 triangular mel filters on the Slaney mel scale from 0 to 8 kHz, decibels floored at
`top_db` below the utterance's maximum (eSpeak's digital silence would otherwise give -inf),
then one mean and one standard deviation per utterance (z-normalization over its own frames).
`features.normalize='per_bin'` instead subtracts each mel bin's own mean over the utterance's
frames (cepstral mean normalization, in the mel domain), which takes away a voice's or a
channel's long-term spectrum, then divides by one standard deviation; SPEC §1's one mean is the
default. `features.speech_gate_db` > 0 takes the mean and the standard deviation over the
utterance's speech alone: the frames whose loudest mel bin lies within that many dB of the
utterance's loudest cell (every frame is still normalized by them), so that silence around a
word, and how much of it a recording keeps, does not move its speech's features (zero, the fill
of `introspection.alignment` and the attributions' baseline, is then the speech's mean); 0, every
frame (SPEC §1), is the default.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.core import rules

Array = jax.Array

# SPEC §1, the same in every preset: corpora are read at SAMPLE_RATE, and the shortest
# utterance a corpus may hold is one receptive field of WINDOW-sample frames every HOP samples.
SAMPLE_RATE = 16000
WINDOW = 512
HOP = 128
# How log_mel normalizes an utterance: one mean (SPEC §1), or one per mel bin; one std either way.
NORMALIZATIONS = ('utterance', 'per_bin')

RULES = {'features': [
    ('sample_rate', lambda v: v == SAMPLE_RATE,
     f'{SAMPLE_RATE} (SPEC §1; corpora are read at that rate)'),
    ('window', *rules.at_least(1)), ('hop', *rules.at_least(1)), ('num_mels', *rules.at_least(1)),
    ('top_db', *rules.POSITIVE),
    ('normalize', *rules.one_of(NORMALIZATIONS)),
    ('speech_gate_db', *rules.at_least(0)),
]}


def hz_to_mel(f):
  """Slaney mel scale: linear below 1 kHz, logarithmic above.

  NumPy in float64 for NumPy input; a JAX array (also inside `jit`) stays a JAX array.
  """
  xp = jnp if isinstance(f, jax.Array) else np
  f = f if xp is jnp else np.asarray(f, np.float64)
  lin = f / (200.0 / 3)
  log = 15.0 + xp.log(xp.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
  return xp.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
  m = np.asarray(m, np.float64)
  lin = m * (200.0 / 3)
  log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
  return np.where(m >= 15.0, log, lin)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, window: int, num_mels: int) -> np.ndarray:
  """Triangular filters `[window // 2 + 1, num_mels]` (FFT bins x mel bins), area-normalized
  (Slaney).

  With 512-point FFTs the lowest filters are narrower than one FFT bin; a filter that would
  catch no bin gets weight 1 on the bin nearest its centre, so no mel bin is constant.
  """
  fft_hz = np.linspace(0, sample_rate / 2, window // 2 + 1)
  edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), num_mels + 2))
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising = (fft_hz[None] - lower) / (centre - lower)
  falling = (upper - fft_hz[None]) / (upper - centre)
  bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
  for m in np.flatnonzero(bank.sum(1) == 0):
    bank[m, np.argmin(np.abs(fft_hz - centre[m, 0]))] = 2.0 / (upper[m, 0] - lower[m, 0])
  return bank.T.astype(np.float32)


def mel_frequencies(config: ml_collections.ConfigDict) -> np.ndarray:
  """Centre frequency in Hz of every mel bin (the figures' frequency axis)."""
  return bin_centres_hz(config.features.sample_rate, config.features.num_mels)


def bin_centres_hz(sample_rate: int, num_mels: int) -> np.ndarray:
  """Centre frequencies of `mel_filterbank`'s filters, equally spaced in mel from 0 to Nyquist:
  centre k (from 0) lies at `(k + 1) * hz_to_mel(sample_rate / 2) / (num_mels + 1)` mel."""
  return mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), num_mels + 2))[1:-1]


def num_frames(num_samples, window: int, hop: int):
  """Frames of an utterance of `num_samples` samples (no centre padding)."""
  return np.maximum(0, (np.asarray(num_samples) - window) // hop + 1)


def samples_for_frames(frames: int, window: int, hop: int) -> int:
  """Fewest samples that give `frames` feature frames (inverse of `num_frames`)."""
  return (frames - 1) * hop + window


def frame_to_seconds(frame, config: ml_collections.ConfigDict):
  """Time in seconds of the centre of feature frame `frame`."""
  c = config.features
  return (np.asarray(frame) * c.hop + c.window / 2) / c.sample_rate


def of_batch(batch, config: ml_collections.ConfigDict) -> tuple[Array, Array, list[str]]:
  """`(x_BxTxF, frames_B, ids)` of a `data.batches` batch, without its filler rows."""
  real = np.asarray(batch['weights']) > 0  # Filler rows (weight 0) repeat an utterance.
  x, frames_B = log_mel(jnp.asarray(batch['audio'][real]),
                        jnp.asarray(batch['audio_lengths'][real]), config)
  return x, frames_B, [str(i) for i in batch['id'][real]]


def hann(window: int, dtype=jnp.float32) -> Array:
  """The periodic Hann window of `window` samples."""
  return jnp.hanning(window + 1)[:-1].astype(dtype)


def stft(audio_xA: Array, window: int, hop: int) -> Array:
  """Complex STFT `[..., T, window // 2 + 1]` over the last axis: periodic Hann window, no
  centre padding, so STFT frame t is feature frame t."""
  t = (audio_xA.shape[-1] - window) // hop + 1
  idx_TxH = jnp.arange(t)[:, None] * hop + jnp.arange(window)[None]
  return jnp.fft.rfft(audio_xA[..., idx_TxH] * hann(window, audio_xA.dtype), axis=-1)


def power_mel(audio_BxA: Array, config: ml_collections.ConfigDict) -> Array:
  """Mel power spectrogram `[B, T, num_mels]` of float audio in [-1, 1]."""
  c = config.features
  power_BxTxE = jnp.abs(stft(audio_BxA, c.window, c.hop)) ** 2
  return power_BxTxE @ mel_filterbank(c.sample_rate, c.window, c.num_mels)


def log_mel(audio_BxA: Array, lengths_B: Array, config: ml_collections.ConfigDict
            ) -> tuple[Array, Array]:
  """Z-normalized log-mel features and their frame counts.

  Args:
    audio_BxA: float audio in [-1, 1], zero-padded after each utterance's `lengths_B` samples.
    lengths_B: samples per utterance.
    config: the experiment config (uses `config.features`).
  Returns:
    `(x_BxTxF, frames_B)`; frames beyond `frames_B` are exactly zero.
  """
  c = config.features
  frames_B = jnp.maximum(0, (lengths_B - c.window) // c.hop + 1)
  db = 10.0 * jnp.log10(jnp.maximum(power_mel(audio_BxA, config), 1e-10))
  mask_BxT = jnp.arange(db.shape[1])[None] < frames_B[:, None]
  top = jnp.max(jnp.where(mask_BxT[..., None], db, -jnp.inf), axis=(1, 2), keepdims=True)
  db = jnp.maximum(db, top - c.top_db)
  # The frames the statistics are taken over: every real one, or (speech_gate_db > 0) those
  # whose loudest bin is within the gate of the top; the top's own frame always is.
  gate = c.get('speech_gate_db', 0.0)
  measured_BxT = mask_BxT if not gate else mask_BxT & (jnp.max(db, axis=2) >= top[..., 0] - gate)
  m = measured_BxT[..., None]
  frames = jnp.maximum(jnp.sum(measured_BxT, axis=1)[:, None, None], 1)
  count = frames * db.shape[2]
  if c.normalize == 'per_bin':
    mean = jnp.sum(jnp.where(m, db, 0.0), axis=1, keepdims=True) / frames
  else:
    mean = jnp.sum(jnp.where(m, db, 0.0), axis=(1, 2), keepdims=True) / count
  # One standard deviation over all bins either way: a bin near the floor throughout (above a
  # codec's band) keeps its few dB, where its own would blow them up to one.
  var = jnp.sum(jnp.where(m, (db - mean) ** 2, 0.0), axis=(1, 2), keepdims=True) / count
  x = (db - mean) * jax.lax.rsqrt(var + 1e-8)
  return jnp.where(mask_BxT[..., None], x, 0.0), frames_B
