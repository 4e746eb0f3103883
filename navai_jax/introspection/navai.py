"""Normalized averaging of aligned inputs (NAvAI): what one batch of utterances contributes
(paper §3.5-3.6, SPEC §8).

Every output position predicted as a letter whose 206-frame receptive window lies inside the
utterance is a *frame* (SPEC §4). Each frame is aligned by every method of `alignment` and
folded into per-class `moments`: the predicted letters a-z and, where the corpus has phoneme
timings, the phoneme that truly sounds at the aligned position (the paper's future work).
`fold_batch` does it for one batch on one device; `result_arrays` turns the folded moments into the
normalized patterns (SPEC §8.5, `moments.normalized_patterns`). The pass over a whole split
(devices, resume, hosts) is `dataset_pass`.

The sensitivity (softmax output, SPEC §5) and LRP of a frame both start from the activations of
its utterance's own pass (`attribution.sensitivity_of_pass`, `lrp.relevance` on
`frames.window_activations`): two backward passes per frame, vmapped over the frames of a chunk.
The same fold profiles the outputs of the layers asked for (`layer_profiles`): the
sensitivity's backward pass yields every layer's gradient on its way down, so the layer
alignments cost no pass of their own.
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.core import rules
from navai_jax.introspection import alignment
from navai_jax.introspection import attribution
from navai_jax.introspection import concepts
from navai_jax.introspection import frames
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import lrp
from navai_jax.introspection import moments
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any
Moments = moments.Moments
Sums = layer_profiles.Sums

_LETTERS = ((lambda v: bool(v) and all(vocab.is_letter_name(l) for l in v)), 'letters a-z')
RULES = {'navai': [
    ('split', bool, 'a split name'),
    ('max_utterances', lambda v: v >= 0, '>= 0 (0 = all)'),
    ('methods', *rules.subset_of(alignment.ALIGNMENTS)),
    ('fill', *rules.one_of(alignment.FILLS)),
    ('baseline', *rules.one_of(moments.BASELINES)),
    ('frame_batch', *rules.at_least(1)), ('save_every', *rules.at_least(1)),
    ('figure_workers', *rules.at_least(1)),
    ('figure_letters', *_LETTERS),
    ('sonify_method', *rules.one_of(alignment.ALIGNMENTS)),
    ('sonify_iterations', *rules.at_least(1)),
    ('layers', *rules.layer_numbers(model.NUM_LAYERS, allow_none=True)),
    ('layer_alignments', *rules.subset_of(layer_profiles.LAYER_ALIGNMENTS)),
    ('concept_layers', *rules.layer_numbers(model.NUM_LAYERS - 1, allow_none=True)),
    ('references', *rules.at_least(1)),
]}


@dataclasses.dataclass(frozen=True)
class Settings:
  """What NAvAI computes for every frame: the fields of `config.navai` that change a number."""
  methods: tuple[str, ...] = alignment.ALIGNMENTS  # alignment methods (`alignment.ALIGNMENTS`)
  fill: str = 'zeros'  # 'zeros' (the paper) or 'recut' (`alignment`)
  frame_batch: int = 64  # frames per attribution chunk (fixed shape; memory against speed)
  layers: tuple[int, ...] = ()  # layers (1..12) profiled in the same pass; () for none
  layer_alignments: tuple[str, ...] = layer_profiles.LAYER_ALIGNMENTS
  concept_layers: tuple[int, ...] = ()  # layers whose channels' LRP shares are averaged
  references: int = 16  # k reference frames per channel of the concept layers and kind
  # Channel-conditional NAvAI: per letter y the channels `conditional_channels[y]` (a tuple
  # of S per letter) of concept layer `conditional_layer`; a frame of letter y whose most
  # relevant channel there is the s-th of them is also folded into class y * S + s.
  conditional_layer: int = 0
  conditional_channels: tuple[tuple[int, ...], ...] = ()

  def __post_init__(self):
    for field in ('methods', 'layers', 'layer_alignments', 'concept_layers'):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    object.__setattr__(self, 'conditional_channels',
                       tuple(tuple(int(c) for c in row) for row in self.conditional_channels))

  @property
  def profiled_alignments(self) -> tuple[str, ...]:
    """The layer alignments the pass computes: none without layers."""
    return self.layer_alignments if self.layers else ()

  @classmethod
  def of(cls, navai_config: ml_collections.ConfigDict, say: bool = False) -> 'Settings':
    """The settings of `config.navai`; layer alignments carried from an input alignment the
    pass does not compute are left out (with `say`, printed)."""
    n = navai_config
    return cls(tuple(dict.fromkeys(n.methods)), n.fill, n.frame_batch, tuple(n.layers),
               layer_profiles.computable_alignments(n.layer_alignments, n.methods,
                                                    say=say and bool(n.layers)),
               tuple(n.get('concept_layers', ())), n.get('references', 16))

  def check(self, specs: Sequence[model.LayerSpec]) -> None:
    """One ValueError for a method, fill, layer or layer alignment that does not exist."""
    alignment.maps_needed(self.methods)
    alignment.check_choice('fill', self.fill, alignment.FILLS)
    layer_profiles.check_layers(specs, self.layers)
    layer_profiles.check_alignments(self.profiled_alignments, self.methods)
    if self.layers and not self.layer_alignments:
      raise ValueError('Layer profiles need at least one layer alignment.')
    if self.frame_batch < 1:
      raise ValueError(f'frame_batch must be >= 1, got {self.frame_batch}.')
    if any(not 1 <= l < len(specs) for l in self.concept_layers) or len(
        set(self.concept_layers)) < len(self.concept_layers):
      raise ValueError(f'concept_layers must be distinct layers 1..{len(specs) - 1} (the last '
                       f'is the output), got {self.concept_layers}.')
    if self.concept_layers and (not isinstance(self.references, int) or self.references < 1):
      raise ValueError(f'navai.references (reference frames per channel) must be >= 1, got '
                       f'{self.references!r}.')
    if self.conditional_channels:
      rows = self.conditional_channels
      if self.conditional_layer not in self.concept_layers:
        raise ValueError(f'Channel-conditional NAvAI needs its layer {self.conditional_layer} '
                         f'among the concept layers {self.concept_layers}.')
      width = specs[self.conditional_layer - 1].features
      if len(rows) != vocab.NUM_LETTERS or len({len(r) for r in rows}) != 1 or any(
          not 0 <= c < width for r in rows for c in r):
        raise ValueError(f'conditional_channels must be {vocab.NUM_LETTERS} rows (a-z) of '
                         f'equally many channels 0..{width - 1} of layer '
                         f'{self.conditional_layer}.')

  @property
  def conditional_classes(self) -> int:
    """Classes of the channel-conditional moments: 26 letters x S channels (0 for none)."""
    return sum(len(r) for r in self.conditional_channels)


class PassState(NamedTuple):
  """Everything a pass accumulates on the devices: letter and phoneme moments per method, and
  per profiled layer (`layer_profiles`) per layer alignment."""
  letters: Moments  # count [M, 26], mean and m2 [M, 26, W, F]
  phonemes: Moments  # count [M, Y], mean and m2 [M, Y, W, F]; Y the phoneme classes
  layer_letters: tuple[Sums, ...] = ()  # per layer: count [M, 26], total [M, 26, Z, C]
  layer_phonemes: tuple[Sums, ...] = ()  # per layer: count [M, Y], total [M, Y, Z, C]
  # Frames left out per method because their attribution map is all zeros (a softmax so
  # saturated that the map lies below float32's range, SPEC §5): they have no position.
  zero_maps: Optional[Array] = None  # [M] int32
  # Per concept layer: each channel's LRP share summed per letter / per phoneme class at the
  # window centre (`concepts.Shares`: count [26] or [Y], total [26, D] or [Y, D]).
  concept_letters: tuple[concepts.Shares, ...] = ()
  concept_phonemes: tuple[concepts.Shares, ...] = ()
  # Per concept layer: each channel's best frames by relevance and by activation.
  references: tuple[concepts.References, ...] = ()
  # Channel-conditional NAvAI (`Settings.conditional_channels`): count [M, 26 S], mean and
  # m2 [M, 26 S, W, F]; None without.
  channel_letters: Optional[Moments] = None


def empty_pass_state(num_methods: int, num_phonemes: int, num_mels: int,
                     specs: Sequence[model.LayerSpec] = (), layers: Sequence[int] = (),
                     num_layer_alignments: int = 0, concept_layers: Sequence[int] = (),
                     references: int = 16, conditional_classes: int = 0) -> PassState:
  """The state of a pass that has seen no frames (profiling `layers`, and the channel shares
  and `references` reference frames per channel of `concept_layers` of the network `specs`)."""
  frame = (alignment.WINDOW, num_mels)
  return PassState(
      moments.empty_moments(vocab.NUM_LETTERS, frame, (num_methods,)),
      moments.empty_moments(num_phonemes, frame, (num_methods,)),
      layer_profiles.empty_state(specs, layers, num_layer_alignments, vocab.NUM_LETTERS),
      layer_profiles.empty_state(specs, layers, num_layer_alignments, num_phonemes),
      jnp.zeros((num_methods,), jnp.int32),
      concepts.empty_shares(specs, concept_layers, vocab.NUM_LETTERS),
      concepts.empty_shares(specs, concept_layers, num_phonemes),
      concepts.empty_references(specs, concept_layers, references) if concept_layers else (),
      moments.empty_moments(conditional_classes, frame, (num_methods,))
      if conditional_classes else None)


def blank_like(state: PassState) -> PassState:
  """A state of no frames shaped like `state`: zero moments and sums, empty reference slots."""
  return jax.tree.map(jnp.zeros_like, state)._replace(
      references=tuple(map(concepts.empty_like, state.references)))


def combine_states(a: PassState, b: PassState) -> PassState:
  """Merge of two partial pass states: `moments.combine` of the moments (exact), the sum of
  the layer sums, of the zero-map counts and of the channel shares; the reference frames'
  top-k merge (`concepts.merge_references`)."""
  return PassState(moments.combine(a.letters, b.letters), moments.combine(a.phonemes, b.phonemes),
                   *(tuple(map(layer_profiles.add, x, y)) for x, y in (
                       (a.layer_letters, b.layer_letters), (a.layer_phonemes, b.layer_phonemes))),
                   a.zero_maps + b.zero_maps,
                   *(tuple(map(layer_profiles.add, x, y)) for x, y in (
                       (a.concept_letters, b.concept_letters),
                       (a.concept_phonemes, b.concept_phonemes))),
                   tuple(map(concepts.merge_references, a.references, b.references)),
                   None if a.channel_letters is None else
                   moments.combine(a.channel_letters, b.channel_letters))


def attribute_and_align(config: ml_collections.ConfigDict, variables: PyTree,
                        methods: Sequence[str], x_BxTxF: Array,
                        intermediates: dict[str, dict[str, Array]],
                        selection: frames.Selection, layer_gradients: bool = False,
                        concept_layers: Sequence[int] = ()
                        ) -> tuple[Array, Array, tuple[Array, ...], tuple[Array, ...],
                                   tuple[Array, ...]]:
  """Alignment positions `[M, N]` of selected frames; each attribution map is made once.

  Sensitivity and LRP both start from the layer activations of the utterances' SAME-padded
  pass (`frames.window_activations`), which equal those of the windows' own VALID passes, so
  a frame costs two backward passes and no forward pass of its own. With `layer_gradients`,
  also the gradients of the predicted letter's softmax output with respect to every layer's
  output (`[N, Z_l, C_l]` per layer), which the sensitivity's backward pass computes anyway;
  with `concept_layers`, the paper's LRP of every channel of those layers at every position of
  the window (`[N, Z_l, D_l]` per layer), which LRP's backward pass computes on its way down,
  and the layers' activations over the window (same shapes).
  Returns `(positions_MxN, has_map_MxN, gradients, channel_relevance, activations)`;
  `has_map` is False where a method's map is all zeros (it has no maximum to align by).
  """
  layers = network.layers_from_variables(config, variables)
  inputs, pre = frames.window_activations(config, x_BxTxF, intermediates, selection.utterance_N,
                                          selection.position_N)
  needed = alignment.maps_needed(tuple(methods))
  maps, gradients, channels, activations = {}, (), (), ()
  if layer_gradients or 'sensitivity' in needed:
    maps['sensitivity'], gradients = jax.vmap(functools.partial(
        attribution.sensitivity_of_pass, layers, layer_gradients=True))(
            inputs, pre, selection.token_N)
  if concept_layers:
    maps['lrp'], per_layer = jax.vmap(functools.partial(
        lrp.relevance, layers, return_layers=True, **lrp.resolve_options('paper')))(
            inputs, pre, selection.token_N)
    channels = tuple(per_layer[l] for l in concept_layers)
    activations = tuple(inputs[l] for l in concept_layers)
  elif 'lrp' in needed:
    maps['lrp'] = jax.vmap(functools.partial(lrp.relevance_paper, layers))(
        inputs, pre, selection.token_N)
  num_frames = selection.token_N.shape[0]
  positions = jnp.stack([alignment.alignment_positions(m, maps, num_frames) for m in methods])
  has_map = jnp.stack([
      jnp.ones_like(selection.valid_N) if alignment.DEFINITIONS[m].map is None else
      jnp.any(maps[alignment.DEFINITIONS[m].map] != 0, axis=(1, 2)) for m in methods])
  return positions, has_map, gradients, channels, activations


def fold_batch(config: ml_collections.ConfigDict, variables: PyTree, state: PassState,
               audio_BxA: Array, lengths_B: Array, weights_B: Array, phonemes_BxT: Array,
               settings: Settings, index_B: Optional[Array] = None
               ) -> tuple[PassState, Array, Array]:
  """Folds every frame of a batch of utterances into `state` (one device; jittable).

  Features, one SAME-padded forward pass, the frames of SPEC §4 (rows with weight 0 have
  none), then a `lax.while_loop` over fixed-size chunks of `frame_batch` frames: attribution
  maps, alignment positions, aligned frames and the moment updates; and for every layer of
  `settings.layers` the aligned layer outputs under its layer alignments (`layer_profiles.fold`).

  Args:
    phonemes_BxT: phoneme class sounding at every feature frame, -1 for none (pauses,
      utterances without timing); T = the feature frames of `audio_BxA`.
    index_B: each row's utterance index in its split (the reference frames' `utterance`);
      None: -1 for every row.
  Returns:
    `(state, tokens_BxU, positions_BxUxM)`: the arg-max token of every output position and the
    alignment position per method of every frame (-1 where a position is not a frame).
  """
  specs = model.layer_specs(config.model)
  methods, frame_batch = settings.methods, settings.frame_batch
  x_BxTxF, frames_B = features.log_mel(audio_BxA, lengths_B, config)
  logits_BxUxV, intermediates = model.apply_inference(config, variables, x_BxTxF,
                                                      frames_B=frames_B)
  valid_BxU, tokens_BxU = frames.frame_mask(config, logits_BxUxV, frames_B)
  valid_BxU &= (weights_B > 0)[:, None]
  rank_BxU = (jnp.cumsum(valid_BxU.reshape(-1)) - 1).reshape(valid_BxU.shape)
  num_chunks = (valid_BxU.sum() + frame_batch - 1) // frame_batch
  num_rows = valid_BxU.shape[0]
  if index_B is None:
    index_B = jnp.full((num_rows,), -1, jnp.int32)

  def chunk(carry):
    k, state, positions_BxUxM = carry
    sel = frames.select(valid_BxU & (rank_BxU // frame_batch == k), tokens_BxU, frame_batch)
    position_MxN, has_map_MxN, gradients, relevance, activations = attribute_and_align(
        config, variables, methods, x_BxTxF, intermediates, sel,
        layer_gradients=bool(settings.layers), concept_layers=settings.concept_layers)
    valid_MxN = sel.valid_N & has_map_MxN
    start_N = model.window_start(specs, sel.position_N)
    aligned_MxNxWxF = jax.vmap(
        lambda p: alignment.cut_aligned(x_BxTxF, frames_B, sel.utterance_N, start_N, p,
                                      settings.fill)
    )(position_MxN)
    fold_methods = jax.vmap(moments.fold)
    letter_N = sel.token_N - vocab.LETTER_IDS[0]
    letters = fold_methods(state.letters, aligned_MxNxWxF,
                           jnp.broadcast_to(letter_N, position_MxN.shape), valid_MxN)
    phonemes = state.phonemes
    if phonemes.count.shape[-1]:
      phoneme_MxN = phonemes_BxT[sel.utterance_N[None], start_N[None] + position_MxN]
      phonemes = fold_methods(phonemes, aligned_MxNxWxF, phoneme_MxN, valid_MxN)
    zero_maps = state.zero_maps + jnp.sum(sel.valid_N & ~has_map_MxN, axis=1, dtype=jnp.int32)
    position_MxN = jnp.where(has_map_MxN, position_MxN, -1)
    layer_letters, layer_phonemes = layer_profiles.fold(
        state.layer_letters, state.layer_phonemes,
        layer_profiles.Plan(settings.layers, settings.profiled_alignments, methods,
                            settings.fill),
        specs, layer_profiles.Utterances(intermediates, frames_B, phonemes_BxT), sel, gradients,
        position_MxN)
    row_N = jnp.where(sel.valid_N, sel.utterance_N, num_rows)  # filler entries are dropped
    positions_BxUxM = positions_BxUxM.at[row_N, sel.position_N].set(position_MxN.T,
                                                                     mode='drop')
    # A frame whose relevance at the layer is all zero (a saturated softmax) has no shares.
    channels = [jnp.sum(r_NxZxD, axis=1) for r_NxZxD in relevance]
    shares = [(concepts.channel_shares(r_NxD), sel.valid_N & jnp.any(r_NxD != 0, axis=1))
              for r_NxD in channels]
    concept_letters = tuple(concepts.fold_shares(c, s_NxD, letter_N, has_N)
                            for c, (s_NxD, has_N) in zip(state.concept_letters, shares))
    centre_N = phonemes_BxT[sel.utterance_N, start_N + alignment.CENTRE]
    concept_phonemes = tuple(concepts.fold_shares(c, s_NxD, centre_N, has_N)
                             for c, (s_NxD, has_N) in zip(state.concept_phonemes, shares))
    utterance_N = jnp.asarray(index_B, jnp.int32)[sel.utterance_N]
    references = tuple(
        concepts.fold_references(refs, r_NxZxD, a_NxZxD, utterance_N, sel.position_N,
                                 sel.token_N - vocab.LETTER_IDS[0], sel.valid_N)
        for refs, r_NxZxD, a_NxZxD in zip(state.references, relevance, activations))
    channel_letters = state.channel_letters
    if settings.conditional_channels:
      table_YxS = jnp.asarray(settings.conditional_channels, jnp.int32)
      slots = table_YxS.shape[1]
      r_NxD = channels[settings.concept_layers.index(settings.conditional_layer)]
      match_NxS = table_YxS[jnp.clip(letter_N, 0, vocab.NUM_LETTERS - 1)] == jnp.argmax(
          r_NxD, axis=1)[:, None]
      class_N = jnp.where(jnp.any(match_NxS, axis=1),
                          letter_N * slots + jnp.argmax(match_NxS, axis=1), -1)
      channel_letters = fold_methods(channel_letters, aligned_MxNxWxF,
                                     jnp.broadcast_to(class_N, position_MxN.shape),
                                     valid_MxN & (class_N >= 0)[None])
    return (k + 1, PassState(letters, phonemes, layer_letters, layer_phonemes, zero_maps,
                             concept_letters, concept_phonemes, references, channel_letters),
            positions_BxUxM)

  positions = jnp.full(valid_BxU.shape + (len(methods),), -1, jnp.int32)
  _, state, positions = jax.lax.while_loop(lambda carry: carry[0] < num_chunks, chunk,
                                           (jnp.int32(0), state, positions))
  return state, tokens_BxU, positions


def result_arrays(result: Any, methods: Sequence[str], phoneme_classes: Sequence[str],
            baseline: str = 'frames') -> dict[str, np.ndarray]:
  """The arrays of a pass's NAvAI results (see `moments.summarize`), keyed for an `.npz` file.

  `result` holds the pass's `letters` and `phonemes` moments (`dataset_pass.PassResult`).

  `letter_*` arrays are `[M, 26, ...]` and `phoneme_*` arrays `[M, Y, ...]` with M the
  methods; `all_letter_mean` / `all_phoneme_mean` are `[M, W, F]`.
  """
  out = {'methods': np.array(methods), 'letters': np.array(list(vocab.LETTERS)),
         'phoneme_classes': np.array(phoneme_classes, dtype=str)}
  for kind, state in (('letter', result.letters), ('phoneme', result.phonemes)):
    s = moments.summarize(Moments(*(jnp.asarray(a) for a in state)), baseline)
    out.update({f'{kind}_count': s['count'], f'{kind}_mean': s['mean'],
                f'all_{kind}_mean': s['all_mean'], f'all_{kind}_count': s['all_count'],
                f'{kind}_normalized': s['normalized'], f'{kind}_tmap': s['tmap']})
  return out
