"""Augmentation for training: of the sound (speed perturbation, room reverberation, additive
noise at a signal-to-noise ratio) and of the features (vocal tract length perturbation,
SpecAugment-style masks, Gaussian noise).

Both run inside the jitted train step. The sound's (`waveform`) act on the padded audio before
the features are computed and keep every sample after an utterance's new length zero. The
features' (`augment`) act on z-normalized log-mel features `x_BxTxF` whose frames beyond each
utterance's `frames_B` are zero. Masked values become 0, the mean of a z-normalized
spectrogram; the frequency warp mixes bins within a frame, and time masks and noise touch only
an utterance's own frames, so the padding stays exactly zero and the batch-norm mask keeps its
meaning.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.core import rules
from navai_jax.recognizer import features

Array = jax.Array

RULES = {'augment': [
    ('warp', *rules.FRACTION), ('noise_std', *rules.at_least(0)),
    ('freq_masks', *rules.at_least(0)), ('freq_mask_width', *rules.at_least(0)),
    ('time_masks', *rules.at_least(0)), ('time_mask_width', *rules.at_least(0)),
    ('speeds', lambda v: all(0.5 <= r <= 2 for r in v), '() or factors in [0.5, 2]'),
    ('reverb', *rules.PROBABILITY), ('rooms', *rules.at_least(1)),
    ('noise_snr_db', lambda v: len(v) == 0 or (len(v) == 2 and v[0] <= v[1]),
     '() or (lowest, highest) in dB'),
]}


def mask_problems(config: ml_collections.ConfigDict) -> list[str]:
  """A frequency mask wider than the mel bins, the one rule across two sections."""
  width, mels = config.augment.freq_mask_width, config.features.num_mels
  if isinstance(width, (int, float)) and isinstance(mels, int) and width > mels:
    return [f'config.augment.freq_mask_width={width} exceeds the {mels} mel bins '
            '(config.features.num_mels)']
  return []


def _bands(key: Array, num_bands: int, max_width: int, size_B: Array, length: int) -> Array:
  """`[B, length]` True inside `num_bands` random bands per row, each at most `max_width` wide.

  A band's width is uniform in [0, max_width] (cut to the row's `size_B`), its start uniform
  over the positions where it fits inside `[0, size_B)`.
  """
  width_key, start_key = jax.random.split(key)
  batch = size_B.shape[0]
  width = jax.random.randint(width_key, (num_bands, batch), 0, max_width + 1)
  width = jnp.minimum(width, size_B)
  room = (size_B - width + 1).astype(jnp.float32)
  start = jnp.floor(jax.random.uniform(start_key, (num_bands, batch)) * room).astype(jnp.int32)
  index = jnp.arange(length)
  inside = (index >= start[..., None]) & (index < (start + width)[..., None])
  return jnp.any(inside, axis=0)


# Vocal tract length perturbation (Jaitly & Hinton 2013): below this frequency the spectrum is
# scaled by the warp factor; above it a second linear piece keeps the Nyquist frequency fixed.
VTLP_BOUNDARY_HZ = 4800.0


def warp_positions(alpha_B: Array, sample_rate: int, num_bins: int) -> Array:
  """`[B, num_bins]` fractional mel-bin index each output bin reads under warp factor alpha.

  Output bin k (centre frequency f_k) takes the spectrum at `alpha * f_k` below the boundary
  `VTLP_BOUNDARY_HZ * min(alpha, 1) / alpha`, and on a straight line from there to Nyquist
  above it: alpha > 1 moves formants down (a longer vocal tract), alpha < 1 up. alpha = 1
  gives every bin its own index.
  """
  nyquist = sample_rate / 2
  step = float(features.hz_to_mel(nyquist)) / (num_bins + 1)  # Mel between bin centres.
  centre_hz = jnp.asarray(features.bin_centres_hz(sample_rate, num_bins), jnp.float32)
  alpha = alpha_B[:, None]
  knee = VTLP_BOUNDARY_HZ * jnp.minimum(alpha, 1.0) / alpha
  below = alpha * centre_hz
  above = nyquist - (nyquist - alpha * knee) * (nyquist - centre_hz) / (nyquist - knee)
  source_hz = jnp.where(centre_hz <= knee, below, above)
  return jnp.clip(features.hz_to_mel(source_hz) / step - 1.0, 0.0, num_bins - 1.0)


def frequency_warp(x_BxTxF: Array, key: Array, max_warp: float, sample_rate: int) -> Array:
  """Warps each utterance's mel axis by a factor drawn uniformly from [1 - max_warp,
  1 + max_warp], interpolating linearly between neighbouring bins (the same factor at every
  frame of an utterance, as if its speaker's vocal tract were longer or shorter).
  """
  if max_warp == 0:
    return x_BxTxF
  batch, _, num_bins = x_BxTxF.shape
  alpha_B = jax.random.uniform(key, (batch,), minval=1.0 - max_warp, maxval=1.0 + max_warp)
  position_BxF = warp_positions(alpha_B, sample_rate, num_bins)
  lower_BxF = jnp.floor(position_BxF)
  frac_BxF = position_BxF - lower_BxF
  source_F = jnp.arange(num_bins, dtype=jnp.float32)[None, :, None]
  # weights_BxFxF[b, source, output]: the two source bins around each output's position.
  weights_BxFxF = (jnp.where(source_F == lower_BxF[:, None], 1.0 - frac_BxF[:, None], 0.0)
                   + jnp.where(source_F == lower_BxF[:, None] + 1, frac_BxF[:, None], 0.0))
  return jnp.einsum('btf,bfg->btg', x_BxTxF, weights_BxFxF.astype(x_BxTxF.dtype))


def frequency_masks(x_BxTxF: Array, key: Array, num_masks: int, max_width: int) -> Array:
  """Zeroes `num_masks` random bands of mel bins per utterance (the same bins at every frame)."""
  if num_masks == 0 or max_width == 0:
    return x_BxTxF
  batch, _, num_bins = x_BxTxF.shape
  masked_BxF = _bands(key, num_masks, max_width, jnp.full((batch,), num_bins), num_bins)
  return jnp.where(masked_BxF[:, None, :], 0.0, x_BxTxF)


def time_masks(x_BxTxF: Array, frames_B: Array, key: Array, num_masks: int,
               max_width: int) -> Array:
  """Zeroes `num_masks` random spans of frames per utterance, inside its own frames."""
  if num_masks == 0 or max_width == 0:
    return x_BxTxF
  masked_BxT = _bands(key, num_masks, max_width, frames_B, x_BxTxF.shape[1])
  return jnp.where(masked_BxT[:, :, None], 0.0, x_BxTxF)


def gaussian_noise(x_BxTxF: Array, frames_B: Array, key: Array, std: float) -> Array:
  """Adds N(0, std²) noise to every value of an utterance's own frames."""
  if std == 0:
    return x_BxTxF
  valid_BxT = jnp.arange(x_BxTxF.shape[1])[None] < frames_B[:, None]
  noise = std * jax.random.normal(key, x_BxTxF.shape, x_BxTxF.dtype)
  return jnp.where(valid_BxT[..., None], x_BxTxF + noise, x_BxTxF)


def augment(x_BxTxF: Array, frames_B: Array, key: Array,
            augment_config: ml_collections.ConfigDict, sample_rate: int) -> Array:
  """Frequency warp, frequency masks, time masks, then noise, as `config.augment` sets them.

  Args:
    x_BxTxF: z-normalized log-mel features, zero after each utterance's frames.
    frames_B: frames per utterance.
    key: randomness of this step; the caller folds in the step number.
    augment_config: `config.augment` (warp, freq_masks, freq_mask_width, time_masks,
      time_mask_width, noise_std).
    sample_rate: of the audio, to place the mel bins for the warp.
  Returns:
    Augmented features of the same shape, still zero after each utterance's frames.
  """
  c = augment_config
  freq_key, time_key, noise_key = jax.random.split(key, 3)
  # The warp's key is folded in, so the masks and noise of a run without it stay the same.
  x_BxTxF = frequency_warp(x_BxTxF, jax.random.fold_in(key, 1), c.warp, sample_rate)
  x_BxTxF = frequency_masks(x_BxTxF, freq_key, c.freq_masks, c.freq_mask_width)
  x_BxTxF = time_masks(x_BxTxF, frames_B, time_key, c.time_masks, c.time_mask_width)
  return gaussian_noise(x_BxTxF, frames_B, noise_key, c.noise_std)


# Sound.

def speed_perturbation(audio_BxA: Array, lengths_B: Array, key: Array,
                       speeds: tuple[float, ...]) -> tuple[Array, Array]:
  """Plays each utterance at a speed drawn uniformly from `speeds` (Ko et al. 2015: tempo and
  pitch change together, 0.9 = slower and lower).

  Output sample n is the input at n * speed, interpolated linearly between its two neighbours
  (a mild low-pass; a speed-up folds the top ~10% of the band back, which the mel features
  barely weigh). The audio is padded to `ceil(A / min(speeds))` samples so the slowest fits.

  Returns:
    audio `[B, ceil(A / min(speeds))]`, zero after each utterance's new length, and the new
    lengths `floor((length - 1) / speed) + 1`.
  """
  if not speeds:
    return audio_BxA, lengths_B
  batch, num_samples = audio_BxA.shape
  out_samples = math.ceil(num_samples / min(speeds))
  dtype = audio_BxA.dtype  # Positions in float32 are within 0.02 samples of 16 s of audio.
  speed_B = jnp.asarray(speeds, dtype)[jax.random.randint(key, (batch,), 0, len(speeds))]
  source_BxA = jnp.arange(out_samples, dtype=dtype)[None] * speed_B[:, None]
  lower_BxA = jnp.floor(source_BxA)
  frac_BxA = source_BxA - lower_BxA
  lower_BxA = lower_BxA.astype(jnp.int32)
  take = lambda i: jnp.take_along_axis(audio_BxA, jnp.clip(i, 0, num_samples - 1), axis=1)
  out_BxA = take(lower_BxA) * (1 - frac_BxA) + take(lower_BxA + 1) * frac_BxA
  new_lengths_B = (jnp.floor((lengths_B - 1) / speed_B) + 1).astype(lengths_B.dtype)
  valid_BxA = jnp.arange(out_samples)[None] < new_lengths_B[:, None]
  return jnp.where(valid_BxA, out_BxA, 0.0).astype(audio_BxA.dtype), new_lengths_B


# Rooms of the reverberation: shoebox rooms of these sizes (m) and reverberation times (s).
ROOM_SIZE_M = ((3.0, 3.0, 2.4), (10.0, 8.0, 3.5))
RT60_S = (0.15, 0.6)
RIR_SECONDS = 0.5  # Each impulse response is cut to this long after its direct sound.


@functools.lru_cache(maxsize=4)
def room_impulse_responses(count: int, seed: int, sample_rate: int) -> np.ndarray:
  """`[count, RIR_SECONDS * sample_rate]` impulse responses of random shoebox rooms.

  Each from pyroomacoustics' image source method, for a room, source and microphone drawn from
  `seed` (room size in `ROOM_SIZE_M`, reverberation time in `RT60_S`, both at least 0.5 m from
  the walls), starting at its direct sound (so speech keeps its timing) and scaled to unit
  energy (so reverberation does not change an utterance's loudness on average).
  """
  # Imported here, not at the top: it takes ~1.3 s, which every process that imports the
  # training code (each script, each test worker) would pay for rooms it rarely uses.
  import pyroomacoustics  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  taps = int(RIR_SECONDS * sample_rate)
  out = np.zeros((count, taps), np.float32)
  for i in range(count):
    size = rng.uniform(*ROOM_SIZE_M)
    absorption, order = pyroomacoustics.inverse_sabine(rng.uniform(*RT60_S), size)
    room = pyroomacoustics.ShoeBox(size, fs=sample_rate, max_order=order,
                                   materials=pyroomacoustics.Material(absorption))
    room.add_source(rng.uniform(0.5, size - 0.5))
    room.add_microphone(rng.uniform(0.5, size - 0.5))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    rir = rir[np.argmax(np.abs(rir)):][:taps]
    out[i, :len(rir)] = rir / np.sqrt(np.sum(rir**2))
  return out


def reverberation(audio_BxA: Array, lengths_B: Array, key: Array, share: float,
                  rirs_RxK: Array) -> Array:
  """Convolves a `share` of the utterances (each drawn with that probability) with one of the
  impulse responses `rirs_RxK`, chosen uniformly; the tail past an utterance's length is cut,
  so lengths stay as they are."""
  if share == 0:
    return audio_BxA
  batch, num_samples = audio_BxA.shape
  pick_key, which_key = jax.random.split(key)
  chosen_BxK = rirs_RxK[jax.random.randint(which_key, (batch,), 0, rirs_RxK.shape[0])]
  size = 1 << (num_samples + rirs_RxK.shape[1] - 1 - 1).bit_length()
  wet_BxA = jnp.fft.irfft(jnp.fft.rfft(audio_BxA, size) * jnp.fft.rfft(chosen_BxK, size),
                          size)[:, :num_samples]
  valid_BxA = jnp.arange(num_samples)[None] < lengths_B[:, None]
  wet_BxA = jnp.where(valid_BxA, wet_BxA, 0.0).astype(audio_BxA.dtype)
  use_B = jax.random.bernoulli(pick_key, share, (batch,))
  return jnp.where(use_B[:, None], wet_BxA, audio_BxA)


def noise_at_snr(audio_BxA: Array, lengths_B: Array, key: Array,
                 snr_db: tuple[float, ...]) -> Array:
  """Adds white Gaussian noise to each utterance's own samples at a signal-to-noise ratio drawn
  uniformly from `snr_db` = (lowest, highest) dB (the signal's power: its mean square)."""
  if not snr_db:
    return audio_BxA
  batch, num_samples = audio_BxA.shape
  snr_key, noise_key = jax.random.split(key)
  valid_BxA = jnp.arange(num_samples)[None] < lengths_B[:, None]
  power_B = jnp.sum(jnp.where(valid_BxA, audio_BxA, 0.0)**2, axis=1) / jnp.maximum(lengths_B, 1)
  snr_B = jax.random.uniform(snr_key, (batch,), minval=snr_db[0], maxval=snr_db[1])
  scale_B = jnp.sqrt(power_B / 10**(snr_B / 10))
  noise_BxA = jax.random.normal(noise_key, audio_BxA.shape, audio_BxA.dtype) * scale_B[:, None]
  return jnp.where(valid_BxA, audio_BxA + noise_BxA, audio_BxA)


def waveform(audio_BxA: Array, lengths_B: Array, key: Array,
             augment_config: ml_collections.ConfigDict, sample_rate: int, seed: int
             ) -> tuple[Array, Array]:
  """Speed perturbation, then reverberation, then noise, as `config.augment` sets them
  (`speeds`, `reverb` with `rooms` impulse responses drawn from `seed`, `noise_snr_db`).

  Returns the audio (longer when a speed is below 1) and the utterances' new lengths.
  """
  c = augment_config
  speeds = tuple(c.get('speeds', ()))
  share, snr_db = c.get('reverb', 0.0), tuple(c.get('noise_snr_db', ()))
  speed_key, room_key, noise_key = jax.random.split(jax.random.fold_in(key, 2), 3)
  audio_BxA, lengths_B = speed_perturbation(audio_BxA, lengths_B, speed_key, speeds)
  if share:
    rirs_RxK = jnp.asarray(room_impulse_responses(c.rooms, seed, sample_rate))
    audio_BxA = reverberation(audio_BxA, lengths_B, room_key, share, rirs_RxK)
  return noise_at_snr(audio_BxA, lengths_B, noise_key, snr_db), lengths_B
