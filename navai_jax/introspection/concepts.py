"""Concept relevance (CRP; Achtibat et al. 2023): which channels of a layer carry the evidence
for a letter, and where in the input each of them looks.

LRP's backward pass is linear in the relevance it carries down (every rule's `s_j` is
`R_j` times a factor of the forward pass). So the relevance of layer l's output can be split by
channel, and each part carried down on its own: the *conditional map* of a set of channels is
the input relevance that flows through those channels only. The maps of a partition of the
channels sum to the unconditional map.

For the paper's rule the max-abs scaling after every layer (`lrp.max_abs_scaling`) is not
linear; a conditional map is scaled by the factors of the unconditional pass, layer by layer,
so the same sum holds and each map stays on the unconditional map's scale.

Layer numbers are the model's: layer l is `layers[l - 1]`, and its output (after batch norm and
ReLU) is the input of layer l + 1, `inputs[l]`. Channels can be conditioned at layers
1 ... L - 1; the last layer's channels are the classes LRP starts from.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from navai_jax.introspection import lrp
from navai_jax.recognizer import network

Array = jax.Array


def check_condition(layers: network.Layers, layer: int, channels_C: Optional[Array] = None
                    ) -> None:
  """ValueError for a layer that cannot be conditioned on or channels it does not have."""
  if not isinstance(layer, int) or not 1 <= layer < len(layers):
    raise ValueError(f'CRP conditions on the channels of layers 1..{len(layers) - 1} (the '
                     f'last one is the output), got layer {layer!r}')
  if channels_C is not None:
    width = layers[layer - 1].kernel_KxCxD.shape[-1]
    bad = [int(c) for c in jnp.ravel(jnp.asarray(channels_C)) if not 0 <= int(c) < width]
    if bad:
      raise ValueError(f'layer {layer} has channels 0..{width - 1}; got {bad}')


def channel_masks(channels_C: Array, width: int, dtype=jnp.float32) -> Array:
  """`[C, width]` one-hot masks, one per channel of `channels_C`."""
  return jax.nn.one_hot(jnp.asarray(channels_C), width, dtype=dtype)


def conditional_relevance(layers: network.Layers, inputs: tuple[Array, ...],
                          pre: tuple[Array, ...], layer: int, masks_CxD: Array,
                          target: Optional[Array] = None, **options
                          ) -> tuple[Array, Array, Array]:
  """CRP's conditional maps of one frame: the input relevance through each channel set.

  Args:
    layers, inputs, pre: the network and one frame's pass, as for `lrp.relevance`.
    layer: the layer (1 ... L - 1) whose output channels are conditioned on.
    masks_CxD: `[C, D]` weights over the layer's D output channels, one condition per row
      (`channel_masks` for single channels; any 0/1 mask for a set).
    target: the class explained (None: the arg-max class).
    **options: LRP options (`lrp.resolve_options`), every rule and form.
  Returns:
    `(maps_CxTxF, map_TxF, channel_relevance_D)`: the conditional input maps, the unconditional
    input map, and the relevance of each channel of the layer (summed over its positions).
  """
  o = lrp.resolve_options(**options)
  check_condition(layers, layer)
  layers, pre, r = lrp.start_relevance(layers, pre, target, o)
  step = dict(o, normalize=False)

  def down(r, k):
    """Relevance of `inputs[k]` from that of layer k + 1's output, and the scaling divisor."""
    raw = lrp.layer_relevance(layers[k], inputs[k], pre[k], r, **step)
    m = jnp.max(jnp.abs(raw)) if o['normalize'] else jnp.ones((), raw.dtype)
    return raw, jnp.where(m > 0, m, 1.0)

  for k in range(len(layers) - 1, layer - 1, -1):
    raw, m = down(r, k)
    r = raw / m
  r_layer_TxD = r  # The relevance of layer `layer`'s output.
  divisors = []
  for k in range(layer - 1, -1, -1):
    raw, m = down(r, k)
    r = raw / m
    divisors.append(m)

  def conditioned(mask_D):
    c = r_layer_TxD * mask_D.astype(r_layer_TxD.dtype)
    for k, m in zip(range(layer - 1, -1, -1), divisors):
      c = lrp.layer_relevance(layers[k], inputs[k], pre[k], c, **step) / m
    return c

  return jax.vmap(conditioned)(masks_CxD), r, jnp.sum(r_layer_TxD, axis=0)


def conditional_maps(layers: network.Layers, windows_NxWxF: Array, targets_N: Array, layer: int,
                     masks_CxD: Array, **options) -> tuple[Array, Array, Array]:
  """`conditional_relevance` of many frames at once (each window exactly one receptive field):
  `[N, C, W, F]` conditional maps, `[N, W, F]` unconditional maps, `[N, D]` channel relevances.
  Pure: jit it (options static) and shard the frames as you like."""
  check_condition(layers, layer)

  def one(window_WxF, target):
    inputs, pre = network.forward(layers, window_WxF)
    return conditional_relevance(layers, inputs, pre, layer, masks_CxD, target, **options)

  return jax.vmap(one)(windows_NxWxF, targets_N)
