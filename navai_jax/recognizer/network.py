"""The network as a list of layers, the form that LRP, attribution and AM run through.

`layers_from_variables` turns the Wav2Letter variables into a tuple of `Layer`s (kernel,
optional bias, optional batch norm, stride). Every layer but the last is followed by its batch
norm (inference mode) and a ReLU; the last one is the output layer. `forward` runs one window
with VALID padding and keeps what the backward rules need: the input and the conv output of
every layer.
"""

import functools
from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any


@flax.struct.dataclass
class Layer:
  """One convolution; `bn` holds 'scale', 'bias', 'mean', 'var' (None: no batch norm)."""
  kernel_KxCxD: Array
  bias_D: Optional[Array]
  bn: Optional[dict[str, Array]]
  stride: int = flax.struct.field(pytree_node=False)
  bn_epsilon: float = flax.struct.field(pytree_node=False, default=1e-5)


Layers = tuple[Layer, ...]


def layers_from_variables(config: ml_collections.ConfigDict, variables: PyTree) -> Layers:
  """The Wav2Letter layers of `variables` as a tuple of `Layer`s."""
  params, stats = variables['params'], variables['batch_stats']
  layers = []
  for spec in model.layer_specs(config.model):
    conv = params[f'conv_{spec.number}']
    bn = None
    if spec.batch_norm:
      name = f'bn_{spec.number}'
      bn = {'scale': params[name]['scale'], 'bias': params[name]['bias'],
            'mean': stats[name]['mean'], 'var': stats[name]['var']}
    layers.append(Layer(conv['kernel'], conv.get('bias'), bn, spec.stride,
                        config.model.bn_epsilon))
  return tuple(layers)


def batch_norm(layer: Layer, z: Array) -> Array:
  """The layer's batch norm in inference mode; the identity without one."""
  if layer.bn is None:
    return z
  return model.batch_norm_inference(z, layer.bn, layer.bn, layer.bn_epsilon)


def _plain_conv(a_TxC: Array, kernel_KxCxD: Array, stride: int) -> Array:
  return model.conv1d(a_TxC[None], kernel_KxCxD, stride, 'VALID')[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(a_TxC: Array, kernel_KxCxD: Array, stride: int) -> Array:
  return _plain_conv(a_TxC, kernel_KxCxD, stride)


def _conv_fwd(a_TxC, kernel_KxCxD, stride):
  return _plain_conv(a_TxC, kernel_KxCxD, stride), (a_TxC, kernel_KxCxD)


def _conv_bwd(stride, residuals, s_UxD):
  a_TxC, kernel_KxCxD = residuals
  _, kernel_vjp = jax.vjp(lambda k: _plain_conv(a_TxC, k, stride), kernel_KxCxD)
  return conv_transpose(s_UxD, kernel_KxCxD, stride, a_TxC.shape[0]), kernel_vjp(s_UxD)[0]


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv(a_TxC: Array, kernel_KxCxD: Array, stride: int, bias_D: Optional[Array] = None
         ) -> Array:
  """VALID convolution of one unbatched sequence.

  Its gradient with respect to `a` is `conv_transpose` (a custom vjp), so sensitivity, AM and
  every other gradient through the window network run at the speed of a forward conv; under
  `jit` an unused kernel gradient is never computed.
  """
  z = _conv(a_TxC, kernel_KxCxD, stride)
  return z if bias_D is None else z + bias_D


def conv_transpose(s_UxD: Array, kernel_KxCxD: Array, stride: int, length: int) -> Array:
  """`sum_j w_ij s_j` for every input i of a VALID convolution: its vjp, as a forward conv.

  The vjp of a strided convolution is a convolution with input dilation, which XLA's CPU
  backend runs several times slower than a plain one. Written in polyphase form instead: input
  `S m + r` collects `s[m - j] · w[S j + r]ᵀ` over j, one stride-1 convolution of the zero-
  padded `s` with the time-flipped kernel `[ceil(K / S), D, S C]`, whose S output groups
  interleave into time. Inputs past the last window (`length > S (U - 1) + K`) get zeros.

  Args:
    s_UxD: cotangent of the conv output; kernel_KxCxD: the layer's kernel; length: the input
      length T.
  Returns:
    `[length, C]`.
  """
  k, c, d = kernel_KxCxD.shape
  num_out = s_UxD.shape[0]
  needed = (num_out - 1) * stride + k
  if needed > length:
    raise ValueError(f'A conv output of {num_out} positions needs at least {needed} inputs, '
                     f'got length {length}.')
  if num_out * stride <= k:  # Few outputs (the top of a receptive window): a matmul and an
    # overlap-add beat a convolution that is mostly zero padding.
    p_UxKxC = jnp.einsum('ud,kcd->ukc', s_UxD, kernel_KxCxD)
    out = jnp.zeros((length, c), p_UxKxC.dtype)
    for u in range(num_out):
      out = out.at[u * stride:u * stride + k].add(p_UxKxC[u])
    return out
  taps = -(-k // stride)  # A kernel width that is no multiple of S gets zero taps appended.
  kernel = jnp.pad(kernel_KxCxD, ((0, taps * stride - k), (0, 0), (0, 0)))
  # w'[j, D, (r, C)] = w[S j + r, C, D], flipped along j.
  w = kernel.reshape(taps, stride, c, d).transpose(0, 3, 1, 2).reshape(taps, d, stride * c)
  padded = jnp.pad(s_UxD, ((taps - 1, taps - 1), (0, 0)))
  out = _plain_conv(padded, jnp.flip(w, 0), 1).reshape(-1, c)[:needed]
  return jnp.pad(out, ((0, length - needed), (0, 0)))


def forward(layers: Layers, x_TxC: Array, *, relu=jax.nn.relu
            ) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
  """VALID pass over one window.

  Returns:
    `(inputs, pre)`: `inputs[l]` the input of layer l+1 (after the previous layer's batch norm
    and ReLU), `pre[l]` its conv output `z` (bias included).
  """
  inputs, pre = [], []
  a = x_TxC
  for i, layer in enumerate(layers):
    z = conv(a, layer.kernel_KxCxD, layer.stride, layer.bias_D)
    inputs.append(a)
    pre.append(z)
    a = batch_norm(layer, z)
    if i < len(layers) - 1:
      a = relu(a)
  return tuple(inputs), tuple(pre)


def output(layers: Layers, pre: tuple[Array, ...]) -> Array:
  """The network output (logits) from the conv outputs of a pass."""
  return batch_norm(layers[-1], pre[-1])


def logits(layers: Layers, x_WxF: Array, *, relu=jax.nn.relu) -> Array:
  """Logits `[V]` of one receptive window."""
  return output(layers, forward(layers, x_WxF, relu=relu)[1])[0]


def fold_batch_norm(layers: Layers) -> Layers:
  """Batch norm merged into the preceding convolution ("canonization"); same forward pass."""
  folded = []
  for layer in layers:
    if layer.bn is None:
      folded.append(layer)
      continue
    bn = layer.bn
    inv_D = bn['scale'] * jax.lax.rsqrt(bn['var'] + layer.bn_epsilon)
    bias_D = 0.0 if layer.bias_D is None else layer.bias_D
    folded.append(Layer(layer.kernel_KxCxD * inv_D, (bias_D - bn['mean']) * inv_D + bn['bias'],
                        None, layer.stride, layer.bn_epsilon))
  return tuple(folded)


def check_targets(targets: Optional[Array], n: int) -> None:
  """Raises ValueError unless `targets` is None or `n` integer classes of the vocabulary.

  Works on traced targets too (then only shape and dtype can be checked).
  """
  if targets is None:
    return
  shape, dtype = np.shape(targets), jnp.result_type(targets)
  if shape != (n,) or not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f'expected {n} integer target classes, got shape {list(shape)} of {dtype}')
  try:
    t = np.asarray(targets)
  except jax.errors.TracerArrayConversionError:
    return
  if t.size and (t.min() < 0 or t.max() >= vocab.SIZE):
    raise ValueError(f'target classes must lie in [0, {vocab.SIZE}), got {t.min()}..{t.max()}')
