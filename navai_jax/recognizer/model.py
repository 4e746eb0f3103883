"""Wav2Letter as in Krug & Stober (2018), SPEC §2.

The Linen module holds the architecture only; every layer is a `conv1d` of this module
followed (except the output layer) by batch norm and ReLU. Introspection code reuses the same
pure pieces (`conv1d`, `batch_norm_inference`, `layer_specs`) on the parameter pytrees, so there
is exactly one definition of what a layer computes.

Layout is time-major: features `x_BxTxF` with F = 128 mel bins, logits `logits_BxUxV` with
U = ceil(T / 2) output positions.
"""

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from navai_jax.core import rules
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any

RECEPTIVE_FIELD = 206
NUM_LAYERS = 12  # SPEC §2: layer 1, eight middle layers, the wide layer, the 1x1 layer, output.

RULES = {'model': [
    ('channels', *rules.at_least(1)), ('wide_channels', *rules.at_least(1)),
    ('num_middle_layers', lambda v: v == 8,
     "8 (the paper's layer structure, whose receptive field of 206 frames the "
     'introspection assumes)'),
    ('bn_momentum', *rules.FRACTION), ('bn_epsilon', *rules.POSITIVE),
    ('dropout', *rules.FRACTION),
]}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One convolution of the network. Layers are numbered 1..12 as in SPEC §2."""
  number: int
  kernel: int
  stride: int
  features: int
  batch_norm: bool  # False only for the output layer, which has a bias instead.

  @property
  def name(self) -> str:
    return f'layer_{self.number}'


def layer_specs(model_config: ml_collections.ConfigDict) -> tuple[LayerSpec, ...]:
  """The layer table of SPEC §2 for a model config."""
  c, w = model_config.channels, model_config.wide_channels
  specs = [LayerSpec(1, 48, 2, c, True)]
  specs += [LayerSpec(2 + i, 7, 1, c, True) for i in range(model_config.num_middle_layers)]
  n = len(specs)
  specs += [LayerSpec(n + 1, 32, 1, w, True), LayerSpec(n + 2, 1, 1, w, True),
            LayerSpec(n + 3, 1, 1, vocab.SIZE, False)]
  return tuple(specs)


def receptive_field(specs: tuple[LayerSpec, ...]) -> int:
  """Input frames that one output position sees."""
  field, jump = 1, 1
  for spec in specs:
    field += (spec.kernel - 1) * jump
    jump *= spec.stride
  return field


def same_pad_low(spec: LayerSpec) -> int:
  """Zeros that SAME padding puts before the input of `spec` (independent of length here)."""
  # lax pads (out - 1) * stride + kernel - length in total and puts the floor half first; for
  # the kernels and strides of this network that is (kernel - 1) // 2 for every input length.
  return (spec.kernel - 1) // 2


def window_start(specs: tuple[LayerSpec, ...], position: Array | int) -> Array | int:
  """First input frame of the receptive window of output `position` under SAME padding.

  Frames `[start, start + receptive_field)` of the utterance are exactly what the SAME-padded
  pass reads for this position; run alone with VALID padding they give the same logits.
  """
  start = position
  for spec in reversed(specs):
    start = start * spec.stride - same_pad_low(spec)
  return start


def output_length(specs: tuple[LayerSpec, ...], input_length: Array | int) -> Array | int:
  """Number of output positions for `input_length` frames under SAME padding."""
  for spec in specs:
    input_length = -(-input_length // spec.stride)
  return input_length


def conv1d(x_BxTxC: Array, kernel_KxCxD: Array, stride: int, padding: str,
           bias_D: Optional[Array] = None) -> Array:
  """1-D convolution, time-major, as every layer of Wav2Letter computes it."""
  z = jax.lax.conv_general_dilated(
      x_BxTxC, kernel_KxCxD, window_strides=(stride,), padding=padding,
      dimension_numbers=('NWC', 'WIO', 'NWC'))
  return z if bias_D is None else z + bias_D


def batch_norm_inference(z: Array, bn_params: PyTree, bn_stats: PyTree, epsilon: float) -> Array:
  """Batch norm with running statistics: what `bn(z)` means in the paper's eq. 3."""
  inv = jax.lax.rsqrt(bn_stats['var'] + epsilon) * bn_params['scale']
  return (z - bn_stats['mean']) * inv + bn_params['bias']


class Conv1D(nn.Module):
  """A convolution whose arithmetic is `conv1d`; parameters `kernel` [K, C, D] (and `bias`)."""
  spec: LayerSpec

  @nn.compact
  def __call__(self, x_BxTxC: Array, padding: str) -> Array:
    init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
    kernel = self.param('kernel', init, (self.spec.kernel, x_BxTxC.shape[-1], self.spec.features))
    bias = None if self.spec.batch_norm else self.param('bias', nn.initializers.zeros,
                                                        (self.spec.features,))
    return conv1d(x_BxTxC, kernel, self.spec.stride, padding, bias)


class Wav2Letter(nn.Module):
  """The fully convolutional letter recognizer of SPEC §2.

  Returns `(logits_BxUxV, intermediates)`; `intermediates['layer_n']` holds the conv output
  `z` ('pre') and the layer's output after batch norm and ReLU ('act'); for the output layer
  'act' is the logits.

  `mask_BxT` marks the real input frames of each row of a padded batch. Every layer's outputs
  at padded positions (the mask carried through the strides) are set to zero, in training and
  inference alike, so the next SAME convolution reads exactly the zeros it would read at the
  end of the utterance alone: an utterance's logits do not depend on what it is batched with
  (SPEC §13). Batch norm's training statistics count the real positions only.
  """
  config: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, x_BxTxF: Array, *, train: bool = False, padding: str = 'SAME',
               mask_BxT: Optional[Array] = None) -> tuple[Array, dict[str, dict[str, Array]]]:
    specs = layer_specs(self.config)
    intermediates = {}
    a = x_BxTxF
    for spec in specs:
      z = Conv1D(spec, name=f'conv_{spec.number}')(a, padding)
      if mask_BxT is not None:
        mask_BxT = mask_BxT[:, ::spec.stride]
        z = jnp.where(mask_BxT[..., None], z, 0.0)
      if spec.batch_norm:
        bn = nn.BatchNorm(use_running_average=not train, momentum=self.config.bn_momentum,
                          epsilon=self.config.bn_epsilon, name=f'bn_{spec.number}')
        mask = None if mask_BxT is None or not train else mask_BxT[..., None]
        a = nn.relu(bn(z, mask=mask))
        if self.config.dropout > 0 and 1 < spec.number < specs[-1].number:
          a = nn.Dropout(self.config.dropout, deterministic=not train)(a)
        if mask_BxT is not None:  # relu(bn(0)) is not 0: padding must stay zero.
          a = jnp.where(mask_BxT[..., None], a, 0.0)
      else:
        a = z
      intermediates[spec.name] = {'pre': z, 'act': a}
    return a, intermediates


def padding_mask(frames_B: Array, num_frames: int) -> Array:
  """`[B, T]`: True at the first `frames_B` frames of each row of a padded batch."""
  return jnp.arange(num_frames)[None] < jnp.asarray(frames_B)[:, None]


def init_variables(config: ml_collections.ConfigDict, key: Array) -> PyTree:
  """Parameters and batch statistics for a model config; input of one receptive window."""
  model = Wav2Letter(config.model)
  x = jnp.zeros((1, RECEPTIVE_FIELD, config.features.num_mels), jnp.float32)
  return model.init(key, x, train=False)


def apply_inference(config: ml_collections.ConfigDict, variables: PyTree, x_BxTxF: Array,
                    padding: str = 'SAME', frames_B: Optional[Array] = None
                    ) -> tuple[Array, dict[str, dict[str, Array]]]:
  """Logits and intermediates with batch norm in inference mode; never mutates the model.

  `frames_B`: the real frames of each row of a padded batch (None: every row is whole); the
  rows' logits are then those of each utterance alone.
  """
  mask = None if frames_B is None else padding_mask(frames_B, x_BxTxF.shape[1])
  return Wav2Letter(config.model).apply(
      {'params': variables['params'], 'batch_stats': variables['batch_stats']}, x_BxTxF,
      train=False, padding=padding, mask_BxT=mask)
