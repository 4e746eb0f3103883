"""The PyTorch port of our Wav2Letter, its log-mel features and its augmentation.

One definition for the benchmarks that compare against PyTorch (`zennit_benchmark.py`,
`train_benchmark.py --compare_torch`). The network is `torch.nn.Sequential` in NCW layout with
the layer table of `navai_jax.recognizer.model.layer_specs`: Conv1d, BatchNorm1d, ReLU (and Dropout where
the config has it), weights copied from our variables. SAME padding is lax's: a convolution of
kernel k and stride s reads `ceil(T / s)` outputs from `(k - 1) // 2` zeros before the input;
a fixed `ConstantPad1d(((k - 1) // 2, k - 1 - (k - 1) // 2))` gives exactly that for every
length (the last zero is never read when lax would not have added it).

Features and augmentation follow `navai_jax.recognizer.features.log_mel` and `navai_jax.training.augment` step for
step (the same filterbank, floor and per-utterance z-normalization; the same mask and noise
distributions from torch's random numbers).
"""

from typing import Any, Optional

import ml_collections
import numpy as np
import torch

from navai_jax.recognizer import features
from navai_jax.recognizer import model

PyTree = Any
PADDINGS = ('SAME', 'VALID')


def same_padding(spec: model.LayerSpec) -> tuple[int, int]:
  """Zeros before and after the input of `spec` that reproduce lax's SAME padding."""
  low = model.same_pad_low(spec)
  return low, spec.kernel - 1 - low


def _copy(tensor: torch.Tensor, value, name: str) -> None:
  value = torch.from_numpy(np.array(value, np.float32))
  if value.shape != tensor.shape:
    raise ValueError(f'{name} has shape {tuple(value.shape)} in the variables, the config needs '
                     f'{tuple(tensor.shape)} (torch layout).')
  with torch.no_grad():
    tensor.copy_(value)


def wav2letter(config: ml_collections.ConfigDict, variables: Optional[PyTree] = None,
               padding: str = 'SAME') -> torch.nn.Sequential:
  """Our Wav2Letter of `config.model` as a PyTorch network in eval mode.

  Args:
    config: the experiment config (uses `config.model` and `config.features.num_mels`).
    variables: `{'params', 'batch_stats'}` as `model.init_variables` makes them, copied into
      the network; None keeps PyTorch's own initialization.
    padding: 'SAME' (whole utterances, as training) or 'VALID' (receptive windows).
  Returns:
    The network: `[B, num_mels, T]` features to `[B, vocabulary, U]` logits. Call `.train()`
    for training mode (batch statistics, dropout).
  Raises:
    ValueError: an unknown padding, or variables whose shapes do not fit the config.
  """
  if padding not in PADDINGS:
    raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}.')
  specs = model.layer_specs(config.model)
  modules = []
  channels = config.features.num_mels
  for spec in specs:
    if padding == 'SAME':
      modules.append(torch.nn.ConstantPad1d(same_padding(spec), 0.0))
    conv = torch.nn.Conv1d(channels, spec.features, spec.kernel, stride=spec.stride,
                           bias=not spec.batch_norm)
    modules.append(conv)
    if variables is not None:
      params = variables['params'][f'conv_{spec.number}']
      _copy(conv.weight, np.asarray(params['kernel']).transpose(2, 1, 0),
            f'conv_{spec.number}/kernel')
      if conv.bias is not None:
        _copy(conv.bias, params['bias'], f'conv_{spec.number}/bias')
    if spec.batch_norm:
      # Flax's momentum keeps `momentum` of the old running value; PyTorch's replaces that much.
      bn = torch.nn.BatchNorm1d(spec.features, eps=config.model.bn_epsilon,
                                momentum=1.0 - config.model.bn_momentum)
      modules += [bn, torch.nn.ReLU()]
      if variables is not None:
        name = f'bn_{spec.number}'
        for ours, theirs in (('scale', 'weight'), ('bias', 'bias')):
          _copy(getattr(bn, theirs), variables['params'][name][ours], f'{name}/{ours}')
        for ours, theirs in (('mean', 'running_mean'), ('var', 'running_var')):
          _copy(getattr(bn, theirs), variables['batch_stats'][name][ours], f'{name}/{ours}')
      if config.model.dropout > 0 and 1 < spec.number < specs[-1].number:
        modules.append(torch.nn.Dropout(config.model.dropout))
    channels = spec.features
  return torch.nn.Sequential(*modules).eval()


def log_mel(audio_BxN: torch.Tensor, lengths_B: torch.Tensor, config: ml_collections.ConfigDict
            ) -> tuple[torch.Tensor, torch.Tensor]:
  """`navai_jax.recognizer.features.log_mel` in PyTorch: `(x_BxTxF, frames_B)`, zero after each utterance."""
  c = config.features
  device = audio_BxN.device
  window = torch.hann_window(c.window, periodic=True, dtype=audio_BxN.dtype, device=device)
  spectrum = torch.stft(audio_BxN, c.window, c.hop, window=window, center=False,
                        return_complex=True)
  bank = torch.from_numpy(features.mel_filterbank(c.sample_rate, c.window, c.num_mels)).to(device)
  power_BxTxF = (spectrum.abs() ** 2).transpose(1, 2) @ bank.to(audio_BxN.dtype)
  db = 10.0 * torch.log10(torch.clamp(power_BxTxF, min=1e-10))
  frames_B = torch.clamp((lengths_B - c.window) // c.hop + 1, min=0)
  m = (torch.arange(db.shape[1], device=device) < frames_B[:, None])[..., None]
  top = torch.amax(torch.where(m, db, -torch.inf), dim=(1, 2), keepdim=True)
  db = torch.maximum(db, top - c.top_db)
  count = torch.clamp(frames_B * db.shape[2], min=1)[:, None, None]
  mean = torch.where(m, db, 0.0).sum(dim=(1, 2), keepdim=True) / count
  var = torch.where(m, (db - mean) ** 2, 0.0).sum(dim=(1, 2), keepdim=True) / count
  x = (db - mean) * torch.rsqrt(var + 1e-8)
  return torch.where(m, x, 0.0), frames_B


def _bands(generator: torch.Generator, num_bands: int, max_width: int, size_B: torch.Tensor,
           length: int) -> torch.Tensor:
  """`navai_jax.training.augment._bands`: `[B, length]` True inside random bands of each row."""
  device = generator.device
  width = torch.randint(0, max_width + 1, (num_bands, len(size_B)), generator=generator,
                        device=device)
  width = torch.minimum(width, size_B)
  room = (size_B - width + 1).float()
  start = torch.floor(torch.rand(width.shape, generator=generator, device=device) * room).long()
  index = torch.arange(length, device=device)
  inside = (index >= start[..., None]) & (index < (start + width)[..., None])
  return inside.any(dim=0)


def augment(x_BxTxF: torch.Tensor, frames_B: torch.Tensor, generator: torch.Generator,
            augment_config: ml_collections.ConfigDict) -> torch.Tensor:
  """`navai_jax.training.augment.augment` in PyTorch: frequency masks, time masks, then noise.

  The frequency warp (`augment.warp`, off in every preset) is not ported.
  """
  c = augment_config
  if c.get('warp', 0.0):
    raise ValueError(f'augment.warp={c.warp}: the frequency warp has no PyTorch port; set it to 0.')
  batch, length, num_bins = x_BxTxF.shape
  if c.freq_masks and c.freq_mask_width:
    bins_B = torch.full((batch,), num_bins, device=x_BxTxF.device)
    masked_BxF = _bands(generator, c.freq_masks, c.freq_mask_width, bins_B, num_bins)
    x_BxTxF = torch.where(masked_BxF[:, None, :], 0.0, x_BxTxF)
  if c.time_masks and c.time_mask_width:
    masked_BxT = _bands(generator, c.time_masks, c.time_mask_width, frames_B, length)
    x_BxTxF = torch.where(masked_BxT[:, :, None], 0.0, x_BxTxF)
  if c.noise_std:
    valid_BxT = torch.arange(length, device=x_BxTxF.device) < frames_B[:, None]
    noise = c.noise_std * torch.randn(x_BxTxF.shape, generator=generator, dtype=x_BxTxF.dtype,
                                      device=x_BxTxF.device)
    x_BxTxF = torch.where(valid_BxT[..., None], x_BxTxF + noise, x_BxTxF)
  return x_BxTxF
