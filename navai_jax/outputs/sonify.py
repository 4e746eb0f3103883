"""Sonification of NAvAI patterns (SPEC §10): mel frame -> linear magnitude -> Griffin-Lim -> WAV.

A NAvAI mean frame is a z-normalized log-mel spectrogram `[T, 128]`. Turning it into sound:

1. Undo the z-normalization approximately: `dB = z * db_std + db_mean`. The per-utterance mean
   and std are gone after averaging, so they are chosen: `db_std` (default 20 dB, about the
   spread of log-mel values of a speech utterance under the features' 80 dB floor) sets the
   dynamic range - a z-value of ±1 becomes ±20 dB around the mean. `db_mean` only scales the
   power by a constant, which the final peak normalization removes, so it changes nothing
   audible; it is kept at -40 dB for readable intermediate values.
2. dB -> power, then mel power -> linear power: non-negative least squares against the
   features' own filterbank, `min ||P @ fb - P_mel||² s.t. P >= 0`, by projected gradient
   descent started from the clamped pseudo-inverse (`method='nnls'`), or just the clamped
   pseudo-inverse (`method='pinv'`).
3. Magnitude = sqrt(power); phase by fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013,
   momentum 0.99 as in librosa) with the features' STFT: 512-sample Hann window, 128-sample hop,
   16 kHz, no centre padding, so STFT frame t is feature frame t.
4. Peak-normalize to 0.9 and write 16-bit PCM with soundfile.
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import soundfile as sf

from navai_jax.recognizer import features
from navai_jax.core import files

Array = jax.Array


def stft(audio_A: Array, window: int, hop: int) -> Array:
  """`features.stft` of one signal, which must hold at least one window."""
  if audio_A.ndim != 1 or audio_A.shape[0] < window:
    raise ValueError(f'stft needs 1-D audio of at least {window} samples, got {audio_A.shape}.')
  return features.stft(audio_A, window, hop)


def istft(spectrum_TxE: Array, window: int, hop: int) -> Array:
  """Least-squares inverse of `stft`: windowed overlap-add over the sum of squared windows.

  The first and last few samples, where the squared windows sum to less than 1e-3, are
  divided by 1e-3 instead (attenuated) rather than amplifying rounding errors.
  """
  t = spectrum_TxE.shape[0]
  frames_TxH = jnp.fft.irfft(spectrum_TxE, n=window, axis=-1) * features.hann(window)
  idx_TxH = jnp.arange(t)[:, None] * hop + jnp.arange(window)[None]
  length = (t - 1) * hop + window
  audio = jnp.zeros((length,), frames_TxH.dtype).at[idx_TxH].add(frames_TxH)
  norm = jnp.zeros((length,), frames_TxH.dtype).at[idx_TxH].add(
      jnp.broadcast_to(features.hann(window) ** 2, frames_TxH.shape))
  return audio / jnp.maximum(norm, 1e-3)


@functools.partial(jax.jit, static_argnames=('iterations', 'window', 'hop'))
def griffin_lim(magnitude_TxE: Array, key: Array, window: int, hop: int, iterations: int = 200,
                momentum: float = 0.99) -> Array:
  """Audio whose STFT magnitude approximates `magnitude_TxE` (fast Griffin-Lim, random start)."""
  phase = jax.random.uniform(key, magnitude_TxE.shape, maxval=2 * jnp.pi)
  angles = jnp.exp(1j * phase).astype(jnp.complex64)

  def step(_, carry):
    angles, previous = carry
    rebuilt = stft(istft(magnitude_TxE * angles, window, hop), window, hop)
    angles = rebuilt - (momentum / (1 + momentum)) * previous
    return angles / (jnp.abs(angles) + 1e-16), rebuilt

  angles, _ = jax.lax.fori_loop(0, iterations, step, (angles, jnp.zeros_like(angles)))
  return istft(magnitude_TxE * angles, window, hop)


def spectral_convergence(magnitude_TxE: Array, audio_A: Array, window: int, hop: int) -> Array:
  """||S - |STFT(audio)||| / ||S||: how far `audio` is from having magnitude S."""
  rebuilt = jnp.abs(stft(audio_A, window, hop))
  return jnp.linalg.norm(magnitude_TxE - rebuilt) / jnp.linalg.norm(magnitude_TxE)


def mel_to_linear_power(power_mel_TxF: Array, config: ml_collections.ConfigDict,
                        method: str = 'nnls', iterations: int = 300) -> Array:
  """Linear power `[T, window // 2 + 1]` whose mel projection approximates `power_mel_TxF`."""
  if method not in ('nnls', 'pinv'):
    raise ValueError(f"Unknown mel inversion {method!r}; choose 'nnls' or 'pinv'.")
  c = config.features
  bank_ExF = jnp.asarray(features.mel_filterbank(c.sample_rate, c.window, c.num_mels))
  if power_mel_TxF.shape[-1] != bank_ExF.shape[1]:
    raise ValueError(f'Expected {bank_ExF.shape[1]} mel bins, got {power_mel_TxF.shape}.')
  start = jnp.maximum(power_mel_TxF @ jnp.linalg.pinv(bank_ExF), 0.0)
  if method == 'pinv':
    return start
  return _nnls(power_mel_TxF, bank_ExF, start, iterations)


@functools.partial(jax.jit, static_argnames='iterations')
def _nnls(target_TxF: Array, bank_ExF: Array, start_TxE: Array, iterations: int) -> Array:
  # Projected gradient on 0.5 ||P bank - target||², step 1 / Lipschitz constant.
  lipschitz = jnp.linalg.norm(bank_ExF, ord=2) ** 2

  def step(_, p):
    return jnp.maximum(p - ((p @ bank_ExF - target_TxF) @ bank_ExF.T) / lipschitz, 0.0)

  return jax.lax.fori_loop(0, iterations, step, start_TxE)


def sonify(frame_TxF: Array | np.ndarray, config: ml_collections.ConfigDict, *,
           db_std: float = 20.0, db_mean: float = -40.0, method: str = 'nnls',
           iterations: int = 200, seed: int = 0) -> np.ndarray:
  """Audio (float32, peak 0.9) of a z-normalized log-mel frame such as a NAvAI mean frame."""
  frame_TxF = jnp.asarray(frame_TxF, jnp.float32)
  if frame_TxF.ndim != 2:
    raise ValueError(f'sonify needs a [T, mel] frame, got shape {frame_TxF.shape}.')
  if not bool(jnp.all(jnp.isfinite(frame_TxF))):
    raise ValueError('sonify needs a finite frame; this one holds NaN or inf (a class '
                     'without frames?).')
  power_mel = 10.0 ** ((frame_TxF * db_std + db_mean) / 10.0)
  magnitude = jnp.sqrt(mel_to_linear_power(power_mel, config, method))
  audio = griffin_lim(magnitude, jax.random.key(seed), config.features.window,
                      config.features.hop, iterations)
  audio = np.asarray(audio, np.float32)
  return 0.9 * audio / max(float(np.abs(audio).max()), 1e-12)


def write_wav(path: str, audio_A: np.ndarray, sample_rate: int) -> None:
  """16-bit PCM WAV, written atomically; parent folders are created."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.write_atomically(path, lambda tmp: sf.write(
      tmp, np.clip(np.asarray(audio_A, np.float32), -1.0, 1.0), sample_rate, format='WAV',
      subtype='PCM_16'))
