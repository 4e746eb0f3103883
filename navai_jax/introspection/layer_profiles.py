"""Layer-wise NAvAI: neuron activation profiles (NAPs) of every layer, per letter and phoneme.

NAvAI averages aligned *inputs*; a neuron activation profile averages aligned *layer outputs*
(Krug et al., "Neuron activation profiles for interpreting convolutional speech recognition
models", NeurIPS 2018 IRASL workshop; gradient-adjusted NAPs, arXiv 2002.08125). For a frame
(an output position predicted as a letter, SPEC §4) the output of layer l over the frame's
receptive window is `[Z_l, C_l]`: Z_l positions (80 in layer 1, 74 down to 32 in layers 2-9,
one in layers 10-12) of C_l channels. It is aligned by one of

* `none`: the window as it is (its centre position `Z_l // 2` stays in the centre);
* `gradient_max`: the position whose gradient, |d y / d a_l| averaged over the channels, is
  largest moves to the centre (the gradient-adjusted NAP's alignment). y is the predicted
  letter's softmax output, and the gradients are the ones the sensitivity map's backward pass
  computes on its way down (`attribution.sensitivity_of_pass(..., layer_gradients=True)`), so
  no layer costs a pass of its own;
* `sensitivity_min`, `sensitivity_max`, `lrp_max`: NAvAI's input alignment position p carried
  to the layer's time axis: the position whose receptive field is centred nearest to p.

and summed, per class (letter a-z; phoneme sounding at the aligned position where the corpus
has timings), in the same pass as NAvAI (`navai.fold_batch`), so memory does not grow with the
frames. Shifting fills zeros (the paper's crop) or re-cuts the layer output of the utterance
(`fill='recut'`), as NAvAI does for inputs.

A profile needs the per-class mean only (no t-maps), so a layer's state is a count and a sum
per class (`Sums`): a chunk of frames is one scatter-add into the rows of its classes, where
NAvAI's moments (which carry variances for the t-maps) rewrite the whole state per chunk; on
the `small` model that makes profiling all twelve layers cost a fraction of the pass.

The contrastive profile of a class is its mean minus the mean over the classes that have
frames, each class weighted equally (`baseline='classes'`), or by its frame count
(`baseline='frames'`, the input NAvAI's normalization): `moments.normalized_patterns`.
"""

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from navai_jax.introspection import alignment
from navai_jax.introspection import frames
from navai_jax.introspection import moments
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

Array = jax.Array

# NAvAI's input alignments that are carried to a layer's time axis.
FROM_INPUT = tuple(a for a in alignment.ALIGNMENTS if alignment.DEFINITIONS[a].map is not None)
LAYER_ALIGNMENTS = ('none', 'gradient_max') + FROM_INPUT


class Plan(NamedTuple):
  """What a pass profiles: `layers` (1..12) under the layer `alignments`, with NAvAI's input
  alignment methods `input_methods` (where the carried alignments come from) and `fill`."""
  layers: tuple[int, ...]
  alignments: tuple[str, ...]
  input_methods: tuple[str, ...]
  fill: str


class Utterances(NamedTuple):
  """A batch's SAME-padded pass: its intermediates, feature frames and phoneme track."""
  intermediates: dict[str, dict[str, Array]]
  frames_B: Array
  phonemes_BxT: Array  # phoneme class at every feature frame (-1: none)


def computable_alignments(names: Sequence[str], input_methods: Sequence[str],
                          say: bool = False) -> tuple[str, ...]:
  """`names` without those carried from an input alignment not among `input_methods` (with
  `say`, printed)."""
  kept = tuple(a for a in names if a not in FROM_INPUT or a in input_methods)
  dropped = [a for a in names if a not in kept]
  if say and dropped:
    print(f'Layer alignment {", ".join(dropped)} skipped: it is carried from the input '
          f'alignment of the same name, which navai.methods ({", ".join(input_methods)}) lacks.')
  return kept


class Geometry(NamedTuple):
  """Where the outputs of one layer sit in a frame's 206-frame input window."""
  length: int  # Z: positions of the layer's output that one network output position sees.
  jump: int  # Input frames from one position to the next (the product of the strides below).
  field: int  # Input frames one position sees (its receptive field).


def check_layers(specs: Sequence[model.LayerSpec], layers: Sequence[int]) -> None:
  """ValueError unless `layers` are distinct layer numbers of the network (1..12)."""
  bad = [l for l in layers if not isinstance(l, (int, np.integer)) or not 1 <= l <= len(specs)]
  if bad:
    raise ValueError(f'Layer numbers must lie in 1..{len(specs)}, got {", ".join(map(str, bad))}.')
  if len(set(layers)) != len(layers):
    raise ValueError(f'Layer numbers must be distinct, got {", ".join(map(str, layers))}.')


def check_alignments(names: Sequence[str], input_methods: Sequence[str]) -> None:
  """ValueError for an unknown layer alignment, or one carried from an input alignment that
  the pass does not compute (`input_methods`, NAvAI's methods)."""
  for name in names:
    alignment.check_choice('layer alignment', name, LAYER_ALIGNMENTS)
  missing = [n for n in names if n in FROM_INPUT and n not in input_methods]
  if missing:
    raise ValueError(f'Layer alignment {", ".join(missing)} is carried from NAvAI\'s input '
                     f'alignment of the same name, which the pass does not compute (methods: '
                     f'{", ".join(input_methods)}); add it to navai.methods.')


def geometry(specs: Sequence[model.LayerSpec], layer: int) -> Geometry:
  """The `Geometry` of layer `layer` (1..12)."""
  check_layers(specs, (layer,))
  return Geometry(model.receptive_field(tuple(specs[layer:])),
                  int(np.prod([s.stride for s in specs[:layer]])),
                  model.receptive_field(tuple(specs[:layer])))


def position_of_input(geom: Geometry, input_position_N: Array) -> Array:
  """The layer position whose receptive field is centred nearest to input frame p (ties: the
  later one), clipped to the window: round((p - (field - 1) / 2) / jump)."""
  j = (2 * input_position_N - geom.field + 1 + geom.jump) // (2 * geom.jump)
  return jnp.clip(j, 0, geom.length - 1).astype(jnp.int32)


def input_of_position(geom: Geometry, position_N: Array) -> Array:
  """The input frame at the centre of layer position j's receptive field (the earlier of two)."""
  return position_N * geom.jump + (geom.field - 1) // 2


def time_of_gradient_max(gradient_NxZxC: Array) -> Array:
  """Position of the largest channel-mean |gradient| of each frame (the earliest on ties)."""
  return jnp.argmax(jnp.abs(gradient_NxZxC).mean(-1), axis=1).astype(jnp.int32)


def positions(name: str, geom: Geometry, gradient_NxZxC: Array, input_position_N: Array
              ) -> tuple[Array, Array]:
  """(layer position, input frame of the class label) of every frame under alignment `name`.

  Args:
    gradient_NxZxC: d y / d (the layer's output) of each frame (used by `gradient_max`).
    input_position_N: the frames' NAvAI input position under `name` (for `none`: 103).
  Returns:
    `(position_N, label_N)`: the position moved to the centre, and the input frame (0..205)
    whose phoneme labels the frame: the input position itself where the alignment comes from
    the input (and for `none`), the centre of the position's receptive field for `gradient_max`.
  """
  alignment.check_choice('layer alignment', name, LAYER_ALIGNMENTS)
  if name == 'gradient_max':
    position_N = time_of_gradient_max(gradient_NxZxC)
    return position_N, input_of_position(geom, position_N)
  return position_of_input(geom, input_position_N), input_position_N


class Sums(NamedTuple):
  """Per-class frame counts `[..., Y]` and sums of aligned layer outputs `[..., Y, Z, C]`."""
  count: Array
  total: Array


def add(a: Sums, b: Sums) -> Sums:
  """Two partial states as one (devices, hosts, a resumed pass); adding zeros changes no bit."""
  return Sums(a.count + b.count, a.total + b.total)


def empty_state(specs: Sequence[model.LayerSpec], layers: Sequence[int], num_alignments: int,
                num_classes: int) -> tuple[Sums, ...]:
  """Sums of no frames: one per layer, `count [M, Y]` and `total [M, Y, Z, C]`."""
  return tuple(Sums(jnp.zeros((num_alignments, num_classes), jnp.float32),
                    jnp.zeros((num_alignments, num_classes, geometry(specs, l).length,
                               specs[l - 1].features), jnp.float32))
               for l in layers)


def fold_sums(state: Sums, x_MxNxZxC: Array, class_MxN: Array, valid_N: Array) -> Sums:
  """`state` with the frames added to their classes (invalid frames and classes outside
  [0, Y) ignored): one scatter-add."""
  num_alignments, num_classes = state.count.shape
  keep_MxN = valid_N[None] & (class_MxN >= 0) & (class_MxN < num_classes)
  class_MxN = jnp.where(keep_MxN, class_MxN, num_classes)  # out of range: dropped
  m_MxN = jnp.broadcast_to(jnp.arange(num_alignments)[:, None], class_MxN.shape)
  return Sums(state.count.at[m_MxN, class_MxN].add(1.0, mode='drop'),
              state.total.at[m_MxN, class_MxN].add(x_MxNxZxC, mode='drop'))


def aligned(act_BxTxC: Array, lengths_B: Array, utterance_N: Array, window_start_N: Array,
            position_N: Array, geom: Geometry, fill: str) -> Array:
  """The layer outputs `[N, Z, C]` of the frames' windows, position `position_N` moved to `Z // 2`.

  Args:
    act_BxTxC: the layer's output over the utterances (SAME-padded pass).
    lengths_B: the layer's valid positions per utterance (what `fill='recut'` may read).
    window_start_N: first layer position of each frame's window.
  """
  return alignment.cut_aligned(act_BxTxC, lengths_B, utterance_N, window_start_N, position_N,
                               fill, width=geom.length)


def fold(letters: tuple[Sums, ...], phonemes: tuple[Sums, ...], plan: Plan,
         specs: Sequence[model.LayerSpec], utterances: Utterances, selection: frames.Selection,
         gradients: Sequence[Array], input_position_MxN: Array
         ) -> tuple[tuple[Sums, ...], tuple[Sums, ...]]:
  """One chunk of frames added to the letter and phoneme profiles of every layer of the plan.

  Args:
    letters, phonemes: per layer, sums over the letters and over the phoneme classes (a
      phoneme state with no classes is left as it is).
    selection: the frames; their token is the predicted letter.
    gradients: `gradients[l - 1]` `[N, Z_l, C_l]`, d y / d output of layer l.
    input_position_MxN: NAvAI's input alignment positions of `plan.input_methods`; -1 for a
      frame without one (its map is all zeros), which the alignments carried from that method
      leave out. The phoneme class of a frame is the phoneme at its label frame (`positions`).
  """
  utterance_N, output_position_N, valid_N = (selection.utterance_N, selection.position_N,
                                             selection.valid_N)
  letter_N = selection.token_N - vocab.LETTER_IDS[0]
  methods = list(plan.input_methods)
  input_start_N = model.window_start(tuple(specs), output_position_N)
  centre_N = jnp.full_like(output_position_N, alignment.CENTRE)
  new_letters, new_phonemes = [], []
  for layer, letter_sums, phoneme_sums in zip(plan.layers, letters, phonemes):
    geom = geometry(specs, layer)
    found = [positions(name, geom, gradients[layer - 1] if name == 'gradient_max' else None,
                       centre_N if name in ('none', 'gradient_max') else
                       input_position_MxN[methods.index(name)])
             for name in plan.alignments]
    layer_position_MxN = jnp.stack([f[0] for f in found])
    has_MxN = jnp.stack([jnp.ones_like(valid_N) if name in ('none', 'gradient_max') else
                         input_position_MxN[methods.index(name)] >= 0
                         for name in plan.alignments])
    label_MxN = input_start_N[None] + jnp.stack([f[1] for f in found])
    act_BxTxC = utterances.intermediates[specs[layer - 1].name]['act']
    lengths_B = model.output_length(tuple(specs[:layer]), utterances.frames_B)
    start_N = model.window_start(tuple(specs[layer:]), output_position_N)
    cut_MxNxZxC = jax.vmap(lambda p: aligned(act_BxTxC, lengths_B, utterance_N, start_N, p,
                                             geom, plan.fill))(layer_position_MxN)
    # A class outside [0, Y) is not counted: so are frames without an alignment position.
    new_letters.append(fold_sums(letter_sums, cut_MxNxZxC, jnp.where(has_MxN, letter_N, -1),
                                 valid_N))
    if phoneme_sums.count.shape[-1]:
      phoneme_sums = fold_sums(
          phoneme_sums, cut_MxNxZxC,
          jnp.where(has_MxN, utterances.phonemes_BxT[utterance_N[None], label_MxN], -1),
          valid_N)
    new_phonemes.append(phoneme_sums)
  return tuple(new_letters), tuple(new_phonemes)


def contrastive_profiles(m: Sums, baseline: str = 'classes') -> dict[str, np.ndarray]:
  """Per-class profiles of one layer's sums (class axis -1 of `count`).

  Returns numpy arrays: `count`; `mean` (NaN for classes without frames); `contrastive`, the
  mean minus the `baseline` mean (`moments.normalized_patterns`: 'classes' weighs every class
  with frames equally, 'frames' is the mean of all frames, as the input NAvAI's), NaN for
  classes without frames.
  """
  count = np.asarray(m.count, np.float64)
  has = count > 0
  expand = lambda a: a.reshape(a.shape + (1,) * (np.ndim(m.total) - a.ndim))
  mean = np.asarray(m.total, np.float64) / expand(np.maximum(count, 1.0))
  pattern = moments.normalized_patterns(mean, count, baseline)
  return {'count': count.astype(np.int64),
          'mean': np.where(expand(has), mean, np.nan).astype(np.float32),
          'contrastive': pattern.astype(np.float32)}


def top_channels(contrastive_YxZxC: np.ndarray, y: int, k: int) -> list[int]:
  """The `k` channels of class `y` furthest above the baseline: largest contrastive profile,
  averaged over the positions (NaN positions left out)."""
  strength_C = np.nanmean(contrastive_YxZxC[y], axis=0)
  return [int(ch) for ch in np.argsort(-strength_C)[:k]]


def arrays(letters: Sequence[Sums], phonemes: Sequence[Sums], layers: Sequence[int],
           names: Sequence[str], phoneme_classes: Sequence[str]) -> dict[str, np.ndarray]:
  """The profiles of a pass keyed for an `.npz` file (`read` reads them back): per layer l
  `layer{l}_letter_count [M, 26]`, `layer{l}_letter_total [M, 26, Z, C]` and the same for
  `phoneme`; the layer numbers, alignment names, letters and phoneme classes."""
  out = {'layers': np.array(layers, np.int64), 'alignments': np.array(names),
         'letters': np.array(list(vocab.LETTERS)),
         'phoneme_classes': np.array(phoneme_classes, dtype=str)}
  for layer, letter_sums, phoneme_sums in zip(layers, letters, phonemes):
    for kind, sums in (('letter', letter_sums), ('phoneme', phoneme_sums)):
      out[f'layer{layer}_{kind}_count'] = np.asarray(sums.count)
      out[f'layer{layer}_{kind}_total'] = np.asarray(sums.total)
  return out


def read(saved: Mapping[str, np.ndarray]) -> dict[int, dict[str, Sums]]:
  """{layer: {'letter': Sums, 'phoneme': Sums}} of arrays written by `arrays`."""
  return {int(l): {kind: Sums(np.asarray(saved[f'layer{l}_{kind}_count']),
                              np.asarray(saved[f'layer{l}_{kind}_total']))
                   for kind in ('letter', 'phoneme')}
          for l in saved['layers']}
