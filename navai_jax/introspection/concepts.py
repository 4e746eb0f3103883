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

Concept importance (`channel_shares`, `Shares`): each channel's share of a frame's relevance at
a layer, `R_c / sum_d |R_d|` with `R_c` the channel's relevance summed over its positions,
averaged per letter (and phoneme class) by the NAvAI pass (`navai.fold_batch`), which streams
it like its moments: sums that add across devices, resumes and hosts.

Reference frames (`References`, CRP's relevance and activation maximization over data): per
channel the k frames of the pass where the channel carries the most relevance (`R_c` as above)
and where it is most active (its largest activation inside the frame's window), kept as a
streaming top-k of (utterance, output position) with the layer position (*unit*) inside the
window where the channel's relevance or activation peaks; one frame per utterance (its best),
since neighbouring frames of an utterance are near copies. Top-k merges are exact and in a
total order (score, then utterance, then position), so any sharding, resume or host split keeps
the same frames.
"""

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from navai_jax.introspection import layer_profiles
from navai_jax.introspection import lrp
from navai_jax.recognizer import model
from navai_jax.recognizer import network

Array = jax.Array
# Per-class frame counts `[Y]` and sums of channel shares `[Y, D]` of one layer; partial sums
# (devices, hosts, a resumed pass) add with `layer_profiles.add`.
Shares = layer_profiles.Sums
KINDS = ('relevance', 'activation')  # what reference frames are ranked by
_LAST = np.iinfo(np.int32).max  # utterance and position of an empty reference slot


class References(NamedTuple):
  """Per channel of one layer the best k frames by each of `KINDS`: `[2, D, k]` arrays, best
  first. `utterance`: the frame's index in the id-sorted split (`sources.Split`), `position`:
  its output position, `unit`: the layer position inside the frame's window where the
  channel's relevance (activation) peaks, `letter`: the letter the frame predicts (0 = a).
  Empty slots have score -inf, utterance and position 2^31 - 1, unit and letter 0 (the same
  whatever the batching)."""
  score: Array
  utterance: Array
  position: Array
  unit: Array
  letter: Array


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


def empty_shares(specs: Sequence[model.LayerSpec], layers: Sequence[int], num_classes: int
                 ) -> tuple[Shares, ...]:
  """Shares of no frames, one per layer of `layers` (their channels from `specs`)."""
  return tuple(Shares(jnp.zeros((num_classes,), jnp.float32),
                      jnp.zeros((num_classes, specs[l - 1].features), jnp.float32))
               for l in layers)


def empty_references(specs: Sequence[model.LayerSpec], layers: Sequence[int], k: int
                     ) -> tuple[References, ...]:
  """References of no frames, k slots per channel and kind, one per layer of `layers`."""
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f'Reference frames need k >= 1 per channel, got {k!r}.')
  out = []
  for l in layers:
    shape = (len(KINDS), specs[l - 1].features, int(k))
    last = jnp.full(shape, _LAST, jnp.int32)
    out.append(References(jnp.full(shape, -jnp.inf, jnp.float32), last, last,
                          jnp.zeros(shape, jnp.int32), jnp.zeros(shape, jnp.int32)))
  return tuple(out)


def _sorted(refs: References) -> References:
  order = jnp.lexsort((refs.position, refs.utterance, -refs.score), axis=-1)
  return References(*(jnp.take_along_axis(x, order, axis=-1) for x in refs))


def empty_like(refs: References) -> References:
  """References of no frames shaped like `refs` (the value a partial state starts from)."""
  return References(jnp.full_like(refs.score, -jnp.inf), jnp.full_like(refs.utterance, _LAST),
                    jnp.full_like(refs.position, _LAST), jnp.zeros_like(refs.unit),
                    jnp.zeros_like(refs.letter))


def merge_references(a: References, b: References) -> References:
  """The best k of both (k of `a`), at most one frame per utterance (its best; frames of
  one utterance are near copies of each other), in the total order: higher score, then lower
  utterance, then lower position. Commutative and associative, so partial results merge
  exactly: a partial result's k utterances that beat an utterance's frame there beat it in
  the whole too. Utterance -1 (unknown) is never taken for a repeat."""
  k = a.score.shape[-1]
  both = _sorted(References(*(jnp.concatenate([x, y], axis=-1) for x, y in zip(a, b))))
  u = both.utterance
  n = u.shape[-1]
  earlier = jnp.tril(jnp.ones((n, n), bool), -1)  # [i, j]: j comes before i
  repeat = jnp.any((u[..., :, None] == u[..., None, :]) & earlier, axis=-1) & (u >= 0) & (
      u != _LAST)
  both = References(jnp.where(repeat, -jnp.inf, both.score), jnp.where(repeat, _LAST, u),
                    jnp.where(repeat, _LAST, both.position), jnp.where(repeat, 0, both.unit),
                    jnp.where(repeat, 0, both.letter))  # a repeat becomes an empty slot
  return References(*(x[..., :k] for x in _sorted(both)))


def fold_references(refs: References, relevance_NxZxD: Array, activation_NxZxD: Array,
                    utterance_N: Array, position_N: Array, letter_N: Array, valid_N: Array
                    ) -> References:
  """Adds N frames: the channel's relevance summed over the window's positions (`R_c`, the
  unit where it is largest) and its largest activation in the window (and that unit)."""
  n, d = relevance_NxZxD.shape[0], relevance_NxZxD.shape[-1]
  score_KxNxD = jnp.stack([jnp.sum(relevance_NxZxD, axis=1), jnp.max(activation_NxZxD, axis=1)])
  unit_KxNxD = jnp.stack([jnp.argmax(relevance_NxZxD, axis=1),
                          jnp.argmax(activation_NxZxD, axis=1)]).astype(jnp.int32)
  valid = valid_N[None, :, None]
  per_frame = lambda v: jnp.broadcast_to(v.astype(jnp.int32)[None, :, None], (2, n, d))
  new = References(jnp.where(valid, score_KxNxD.astype(jnp.float32), -jnp.inf),
                   jnp.where(valid, per_frame(utterance_N), _LAST),
                   jnp.where(valid, per_frame(position_N), _LAST),
                   jnp.where(valid, unit_KxNxD, 0), jnp.where(valid, per_frame(letter_N), 0))
  return merge_references(refs, References(*(jnp.swapaxes(x, 1, 2) for x in new)))


def channel_shares(relevance_NxD: Array) -> Array:
  """Each channel's share of its frame's relevance, `R_c / sum_d |R_d|` (0 for no relevance)."""
  total_N = jnp.sum(jnp.abs(relevance_NxD), axis=1, keepdims=True)
  return jnp.where(total_N > 0, relevance_NxD / jnp.where(total_N > 0, total_N, 1.0), 0.0)


def fold_shares(sums: Shares, shares_NxD: Array, class_N: Array, valid_N: Array) -> Shares:
  """Adds the valid frames' shares to their classes (class -1: none)."""
  num_classes = sums.count.shape[0]
  valid_N = valid_N & (class_N >= 0) & (class_N < num_classes)
  index_N = jnp.where(valid_N, class_N, num_classes)  # dropped
  weight_N = valid_N.astype(jnp.float32)
  return Shares(sums.count.at[index_N].add(weight_N, mode='drop'),
                sums.total.at[index_N].add(shares_NxD * weight_N[:, None], mode='drop'))


def importance(sums: Shares) -> dict[str, np.ndarray]:
  """Per class: `count`, the mean share of every channel `share [Y, D]`, the channels by
  falling mean share `ranking [Y, D]`, and how concentrated the evidence is: the effective
  number of channels `1 / sum_c p_c^2` with `p = |mean share| / sum |mean share|` (1: one
  channel carries it all; D: all alike)."""
  count = np.asarray(sums.count, np.float64)
  share = np.asarray(sums.total, np.float64) / np.maximum(count, 1)[:, None]
  weight = np.abs(share) / np.maximum(np.abs(share).sum(1, keepdims=True), 1e-30)
  effective = np.where(count > 0, 1 / np.maximum((weight**2).sum(1), 1e-30), 0.0)
  return {'count': count, 'share': share, 'ranking': np.argsort(-share, axis=1, kind='stable'),
          'effective_channels': effective}


def arrays(letters: Sequence[Shares], phonemes: Sequence[Shares], layers: Sequence[int],
           letter_names: Sequence[str], phoneme_classes: Sequence[str]
           ) -> dict[str, np.ndarray]:
  """The concept importance of a pass, keyed for an `.npz` file: per layer l and kind (letter,
  phoneme) `layerL_KIND_count`, `_share` (mean share per channel), `_effective_channels`."""
  out = {'layers': np.asarray(layers, np.int64), 'letters': np.array(list(letter_names)),
         'phoneme_classes': np.array(list(phoneme_classes), dtype=str)}
  for l, per_letter, per_phoneme in zip(layers, letters, phonemes):
    for kind, sums in (('letter', per_letter), ('phoneme', per_phoneme)):
      found = importance(sums)
      out.update({f'layer{l}_{kind}_count': found['count'],
                  f'layer{l}_{kind}_share': found['share'],
                  f'layer{l}_{kind}_effective_channels': found['effective_channels']})
  return out


def reference_arrays(references: Sequence[References], layers: Sequence[int], ids_U: np.ndarray
                     ) -> dict[str, np.ndarray]:
  """The reference frames of a pass, keyed for the `.npz` of `arrays`: per layer l
  `layerL_ref_KEY` `[2, D, k]` for score, utterance, position, unit, letter, and `_id` (the
  utterance id from `ids_U`, the split's id-sorted ids; '' for an empty slot or an unknown
  utterance). The kinds are `KINDS`."""
  out = {'reference_kinds': np.array(KINDS)}
  for l, refs in zip(layers, references):
    utterance = np.asarray(refs.utterance)
    known = (utterance >= 0) & (utterance < len(ids_U))
    out[f'layer{l}_ref_id'] = np.where(known, np.asarray(ids_U)[np.where(known, utterance, 0)]
                                       if len(ids_U) else '', '').astype(str)
    for key in References._fields:
      out[f'layer{l}_ref_{key}'] = np.asarray(getattr(refs, key))
  return out


def markdown(saved: dict[str, np.ndarray], top: int = 3) -> str:
  """Per concept layer, the channels that carry each letter (and phoneme class) most: their
  mean shares of the letter's relevance and the effective number of channels."""
  lines = []
  for l in saved['layers']:
    lines += [f'## Layer {l}', '', f'| class | frames | top {top} channels (mean share) | '
              'effective channels |', '|---|---|---|---|']
    for kind, names in (('letter', saved['letters']), ('phoneme', saved['phoneme_classes'])):
      count, share = saved[f'layer{l}_{kind}_count'], saved[f'layer{l}_{kind}_share']
      effective = saved[f'layer{l}_{kind}_effective_channels']
      for y, name in enumerate(names):
        if count[y]:
          best = np.argsort(-share[y], kind='stable')[:top]
          lines.append(f'| {kind} {name} | {int(count[y])} | ' + ', '.join(
              f'{c} ({share[y, c]:.3f})' for c in best) + f' | {effective[y]:.1f} |')
    lines.append('')
  return ('Each channel\'s mean share of a frame\'s LRP relevance (paper rule) at its layer, '
          'per predicted letter and per phoneme class at the window centre; effective '
          'channels = 1 / sum p^2 of the normalized |shares|.\n\n' + '\n'.join(lines))
