"""Feature augmentation for training: vocal tract length perturbation, SpecAugment-style
masks and additive Gaussian noise.

Runs inside the jitted train step on z-normalized log-mel features `x_BxTxF` whose frames
beyond each utterance's `frames_B` are zero. Masked values become 0, the mean of a
z-normalized spectrogram; the frequency warp mixes bins within a frame, and time masks and
noise touch only an utterance's own frames, so the padding stays exactly zero and the
batch-norm mask keeps its meaning.
"""

import jax
import jax.numpy as jnp
import ml_collections

from navai_jax.core import rules
from navai_jax.recognizer import features

Array = jax.Array

RULES = {'augment': [
    ('warp', *rules.FRACTION), ('noise_std', *rules.at_least(0)),
    ('freq_masks', *rules.at_least(0)), ('freq_mask_width', *rules.at_least(0)),
    ('time_masks', *rules.at_least(0)), ('time_mask_width', *rules.at_least(0)),
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
