"""Normalized averaging of aligned inputs (NAvAI), paper §3.5-3.6 and SPEC §8, at dataset scale.

Every output position predicted as a letter whose 206-frame receptive window lies inside the
utterance is a *frame* (SPEC §4). Each frame gets an alignment position `p` in [0, 206):

* `none`: the centre column 103 (no alignment);
* `sensitivity_min` / `sensitivity_max`: the time index of the smallest / largest element of the
  whole `[206, 128]` sensitivity map (paper eq. 1); ties go to the earliest element;
* `lrp_max`: the time index of the largest element of the LRP relevance map (rule 'paper',
  eqs. 2-5).

The frame is then shifted so that column `p` lands on column 103 (SPEC §8.3). With
`fill='zeros'` the columns shifted in are zeros, as in the paper ("crops the frame on one side";
zero is the mean of a z-normalized spectrogram). With `fill='recut'` the aligned window is cut
from the utterance itself, so the shifted-in columns hold the real neighbouring spectrogram
where the utterance has it (zeros only where it runs out) - not in the paper.

Aligned frames are folded, batch by batch, into per-class moments (count, mean and the sum of
squared deviations M2 of every pixel), merged with the parallel formula of Chan et al. (1979):
merges of partial states - batches, devices, classes - are exact, and memory does not grow with
the number of frames. Classes are the predicted letters a-z and, where the corpus has phoneme
timings, the phoneme that truly sounds at the aligned position (the paper's future work).

A pass over a split runs the whole pipeline (features, logits, frames, sensitivity, LRP, all
alignments, accumulation) on a 1-D device mesh: utterance batches are split over the devices,
each device folds its frames into its own partial state (`jax.shard_map`, no communication
during the pass), and every `save_every` batches the partial states are merged across devices
(Chan merges in device order under `jit`, which XLA turns into cross-device transfers) and
written atomically to disk, so that a killed pass resumes with an identical result. The
sensitivity (softmax output, SPEC §5) runs on each frame's window; LRP reuses the activations
of the utterance's own pass. One process; its local devices.
"""

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import matplotlib.figure
import ml_collections
import numpy as np
import tqdm

from navai_jax import alignment_quality
from navai_jax import attribution
from navai_jax import corpus
from navai_jax import features
from navai_jax import frames
from navai_jax import lrp
from navai_jax import model
from navai_jax import parallel
from navai_jax import plotting
from navai_jax import vocab

Array = jax.Array
PyTree = Any

WINDOW = model.RECEPTIVE_FIELD
CENTRE = WINDOW // 2  # 103: the column an aligned position is moved to.
ALIGNMENTS = ('none', 'sensitivity_min', 'sensitivity_max', 'lrp_max')
FILLS = ('zeros', 'recut')


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f'Unknown {name} {value!r}; choose one of {", ".join(choices)}.')


# --- Alignment (SPEC §8.2-3) -----------------------------------------------------------------


def time_of_max(map_NxWxF: Array) -> Array:
  """Time index of the largest element of each `[W, F]` map (the earliest on ties)."""
  n, _, f = map_NxWxF.shape
  return (jnp.argmax(map_NxWxF.reshape(n, -1), axis=1) // f).astype(jnp.int32)


def time_of_min(map_NxWxF: Array) -> Array:
  """Time index of the smallest element of each `[W, F]` map (the earliest on ties)."""
  n, _, f = map_NxWxF.shape
  return (jnp.argmin(map_NxWxF.reshape(n, -1), axis=1) // f).astype(jnp.int32)


def alignment_positions(method: str, sensitivity_NxWxF: Array | None = None,
                        relevance_NxWxF: Array | None = None,
                        num_frames: int | None = None) -> Array:
  """Alignment position `p_N` in [0, 206) of every frame for one alignment method.

  Args:
    method: one of ALIGNMENTS.
    sensitivity_NxWxF: sensitivity maps (needed by `sensitivity_min` / `sensitivity_max`).
    relevance_NxWxF: LRP relevance maps, rule 'paper' (needed by `lrp_max`).
    num_frames: N (needed by `none`, which returns the centre 103 for every frame).
  """
  _check_choice('alignment method', method, ALIGNMENTS)
  if method == 'none':
    if num_frames is None:
      raise ValueError("Alignment 'none' needs num_frames.")
    return jnp.full((num_frames,), CENTRE, jnp.int32)
  maps = sensitivity_NxWxF if method.startswith('sensitivity') else relevance_NxWxF
  if maps is None:
    raise ValueError(f'Alignment {method!r} needs its attribution map, which was not given.')
  return (time_of_min if method == 'sensitivity_min' else time_of_max)(maps)


def cut_aligned(x_BxTxF: Array, frames_B: Array, utterance_N: Array, start_N: Array,
                position_N: Array, fill: str = 'zeros') -> Array:
  """Aligned frames `[N, 206, F]`: column `position_N` of each frame moved to column 103.

  Frame n is the window `x_BxTxF[utterance_N[n], start_N[n]:start_N[n] + 206]`; its aligned
  version reads utterance frame `start + p - 103 + t` at column t. With `fill='zeros'` only
  what lies inside the original window is kept (zeros shifted in, the paper's crop); with
  `fill='recut'` everything inside the utterance's `frames_B` frames is kept. A gather with
  clamped indices and a mask, so it has fixed shapes under `jit`.
  """
  _check_choice('fill', fill, FILLS)
  t_W = jnp.arange(WINDOW)
  shift_N = position_N - CENTRE
  source_NxW = start_N[:, None] + shift_N[:, None] + t_W[None]
  keep_NxW = (source_NxW >= 0) & (source_NxW < frames_B[utterance_N][:, None])
  if fill == 'zeros':
    inside_NxW = t_W[None] + shift_N[:, None]
    keep_NxW &= (inside_NxW >= 0) & (inside_NxW < WINDOW)
  source_NxW = jnp.clip(source_NxW, 0, x_BxTxF.shape[1] - 1)
  cut_NxWxF = x_BxTxF[utterance_N[:, None], source_NxW]
  return jnp.where(keep_NxW[..., None], cut_NxWxF, 0.0)


def shift_to_centre(windows_NxWxF: Array, position_N: Array) -> Array:
  """Shifts each 206-frame window so that column `position_N` lands on column 103 (zeros in)."""
  if windows_NxWxF.ndim != 3 or windows_NxWxF.shape[1] != WINDOW:
    raise ValueError(f'Expected windows [N, {WINDOW}, F], got shape {windows_NxWxF.shape}.')
  n = windows_NxWxF.shape[0]
  return cut_aligned(windows_NxWxF, jnp.full((n,), WINDOW), jnp.arange(n),
                     jnp.zeros((n,), jnp.int32), position_N, 'zeros')


# --- Streaming moments (SPEC §8.4-5) ---------------------------------------------------------


class Moments(NamedTuple):
  """Per-class pixel moments: `count [..., C]`, `mean` and `m2 [..., C, W, F]`.

  `m2` is the sum of squared deviations from the mean (variance = m2 / (count - ddof)).
  Leading axes (alignment methods, devices) are allowed; every function maps over them.
  """
  count: Array
  mean: Array
  m2: Array


def empty_moments(num_classes: int, frame_shape: tuple[int, ...] = (WINDOW, 128),
                  leading: tuple[int, ...] = ()) -> Moments:
  """Moments of no frames."""
  return Moments(jnp.zeros(leading + (num_classes,), jnp.float32),
                 jnp.zeros(leading + (num_classes,) + frame_shape, jnp.float32),
                 jnp.zeros(leading + (num_classes,) + frame_shape, jnp.float32))


def batch_moments(x_NxWxF: Array, class_N: Array, valid_N: Array, num_classes: int) -> Moments:
  """Moments of one batch of frames per class (two passes over the batch: mean, then M2).

  Frames with `valid_N` False or a class outside [0, num_classes) are ignored.
  """
  onehot_NxC = ((class_N[:, None] == jnp.arange(num_classes)[None]) & valid_N[:, None]
                ).astype(jnp.float32)
  count_C = onehot_NxC.sum(0)
  x_NxD = x_NxWxF.reshape(x_NxWxF.shape[0], -1)
  mean_CxD = (onehot_NxC.T @ x_NxD) / jnp.maximum(count_C, 1.0)[:, None]
  centred_NxD = x_NxD - onehot_NxC @ mean_CxD
  m2_CxD = onehot_NxC.T @ (centred_NxD * centred_NxD)
  shape = (num_classes,) + x_NxWxF.shape[1:]
  return Moments(count_C, mean_CxD.reshape(shape), m2_CxD.reshape(shape))


def combine(a: Moments, b: Moments) -> Moments:
  """Exact merge of two partial states (Chan, Golub & LeVeque's parallel formula).

  An empty side returns the other side bit for bit, so merging into an empty state (a
  resumed pass, an idle device) changes no number.
  """
  na, nb = a.count, b.count
  n = na + nb
  expand = lambda c: c.reshape(c.shape + (1,) * (a.mean.ndim - c.ndim))
  na_, nb_, n_ = expand(na), expand(nb), expand(jnp.maximum(n, 1.0))
  delta = b.mean - a.mean
  mean = a.mean + delta * (nb_ / n_)
  m2 = a.m2 + b.m2 + delta * delta * (na_ * nb_ / n_)
  mean = jnp.where(na_ == 0, b.mean, jnp.where(nb_ == 0, a.mean, mean))
  m2 = jnp.where(na_ == 0, b.m2, jnp.where(nb_ == 0, a.m2, m2))
  return Moments(n, mean, m2)


def reduce_moments(m: Moments, axis: int) -> Moments:
  """Merges the partial states along the count axis `axis` (k-way form of Chan's formula).

  count = Σ n_k, mean = Σ n_k mean_k / count, M2 = Σ (M2_k + n_k (mean_k - mean)²).
  `axis` counts over the axes of `m.count`; e.g. the class axis gives all-class moments.
  """
  axis = axis % m.count.ndim
  expand = lambda c: c.reshape(c.shape + (1,) * (m.mean.ndim - m.count.ndim))
  count = m.count.sum(axis)
  n_k = expand(m.count)
  mean = (n_k * m.mean).sum(axis) / expand(jnp.maximum(count, 1.0))
  deviation = m.mean - jnp.expand_dims(mean, axis)
  m2 = (m.m2 + n_k * deviation * deviation).sum(axis)
  return Moments(count, mean, m2)


def variance(m: Moments, ddof: int = 1) -> Array:
  """Per-pixel variance (NaN where a class has `ddof` frames or fewer)."""
  n = m.count.reshape(m.count.shape + (1,) * (m.mean.ndim - m.count.ndim))
  return jnp.where(n > ddof, m.m2 / jnp.maximum(n - ddof, 1.0), jnp.nan)


def welch_t(a: Moments, b: Moments) -> Array:
  """Welch's t statistic of every pixel, sample `a` against sample `b` (unequal variances).

  t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b) with ddof-1 variances; NaN where a
  side has fewer than two frames. Equals `scipy.stats.ttest_ind(a, b, equal_var=False)`.
  """
  expand = lambda c: c.reshape(c.shape + (1,) * (a.mean.ndim - c.ndim))
  se2 = (variance(a) / expand(jnp.maximum(a.count, 1.0))
         + variance(b) / expand(jnp.maximum(b.count, 1.0)))
  return (a.mean - b.mean) / jnp.sqrt(se2)


def summarize(m: Moments) -> dict[str, np.ndarray]:
  """NAvAI results from per-class moments with class axis -1 of `count`.

  Returns numpy arrays: `count`, per-class `mean`, `all_mean` (all frames of all classes),
  `normalized` (class mean - all-class mean, paper §3.5), `tmap` (Welch t of a class's frames
  against all frames of all classes, the class's own frames included, so it tests "does this
  class differ from the average frame that is normalized away").
  Classes without frames have NaN means, patterns and t-maps.
  """
  all_m = reduce_moments(m, axis=-1)
  c = m.count.shape[-1]
  all_c = jax.tree.map(lambda v: jnp.repeat(jnp.expand_dims(v, m.count.ndim - 1), c,
                                            axis=m.count.ndim - 1), all_m)
  has = m.count.reshape(m.count.shape + (1,) * (m.mean.ndim - m.count.ndim)) > 0
  mean = jnp.where(has, m.mean, jnp.nan)
  return {
      'count': np.asarray(m.count).astype(np.int64),
      'mean': np.asarray(mean),
      'all_mean': np.asarray(all_m.mean),
      'all_count': np.asarray(all_m.count).astype(np.int64),
      'normalized': np.asarray(mean - all_c.mean),
      'tmap': np.asarray(welch_t(m, all_c)),
  }


# --- The pass over a split: pipeline, devices, resumption (SPEC §8.1, §8.5) -------------------


class PassState(NamedTuple):
  """Everything a pass accumulates on the devices: letter and phoneme moments per method."""
  letters: Moments  # count [M, 26], mean and m2 [M, 26, 206, F]
  phonemes: Moments  # count [M, P], mean and m2 [M, P, 206, F]


def empty_pass_state(num_methods: int, num_phonemes: int, num_mels: int = 128) -> PassState:
  """The state of a pass that has seen no frames."""
  frame = (WINDOW, num_mels)
  return PassState(empty_moments(26, frame, (num_methods,)),
                   empty_moments(num_phonemes, frame, (num_methods,)))


def fold(m: Moments, x_NxWxF: Array, class_N: Array, valid_N: Array) -> Moments:
  """`m` with one batch of frames added (classes outside [0, C) and invalid frames ignored)."""
  return combine(m, batch_moments(x_NxWxF, class_N, valid_N, m.count.shape[-1]))


def _alignment_positions_of_frames(config: ml_collections.ConfigDict, variables: PyTree,
                                   methods: Sequence[str], x_BxTxF: Array,
                                   intermediates: dict[str, dict[str, Array]],
                                   selection: frames.Selection) -> Array:
  """Alignment positions `[M, N]` of selected frames; each attribution map is made once.

  Sensitivity runs on the frames' windows (VALID padding, `jax.vjp`); LRP reuses the layer
  activations of the utterances' SAME-padded pass (`frames.window_activations`), which equal
  those of the windows' own passes.
  """
  layers = lrp.layers_from_variables(config, variables)
  sensitivity = relevance = None
  if any(m.startswith('sensitivity') for m in methods):
    windows_NxWxF = frames.gather_windows(config, x_BxTxF, selection.utterance_N,
                                          selection.position_N)
    sensitivity = jax.vmap(lambda w, t: attribution.sensitivity_map(layers, w, t))(
        windows_NxWxF, selection.token_N)
  if 'lrp_max' in methods:
    inputs, pre = frames.window_activations(config, x_BxTxF, intermediates,
                                            selection.utterance_N, selection.position_N)
    relevance = jax.vmap(lambda i, z, t: lrp.relevance(layers, i, z, t, rule='paper'))(
        inputs, pre, selection.token_N)
  return jnp.stack([alignment_positions(m, sensitivity, relevance, selection.token_N.shape[0])
                    for m in methods])


def fold_batch(config: ml_collections.ConfigDict, variables: PyTree, state: PassState,
               audio_BxN: Array, lengths_B: Array, weights_B: Array, phonemes_BxT: Array, *,
               methods: Sequence[str], fill: str, frame_batch: int
               ) -> tuple[PassState, Array, Array]:
  """Folds every frame of a batch of utterances into `state` (one device; jittable).

  Features, one SAME-padded forward pass, the frames of SPEC §4 (rows with weight 0 have
  none), then a `lax.while_loop` over fixed-size chunks of `frame_batch` frames: attribution
  maps, alignment positions, aligned frames and the moment updates.

  Args:
    phonemes_BxT: phoneme class sounding at every feature frame, -1 for none (pauses,
      utterances without timing); T = the feature frames of `audio_BxN`.
  Returns:
    `(state, tokens_BxU, positions_BxUxM)`: the arg-max token of every output position and the
    alignment position per method of every frame (-1 where a position is not a frame).
  """
  specs = model.layer_specs(config.model)
  x_BxTxF, frames_B = features.log_mel(audio_BxN, lengths_B, config)
  logits_BxUxV, intermediates = model.apply_inference(config, variables, x_BxTxF)
  valid_BxU, tokens_BxU = frames.frame_mask(config, logits_BxUxV, frames_B)
  valid_BxU &= (weights_B > 0)[:, None]
  rank_BxU = (jnp.cumsum(valid_BxU.reshape(-1)) - 1).reshape(valid_BxU.shape)
  num_chunks = (valid_BxU.sum() + frame_batch - 1) // frame_batch
  num_rows = valid_BxU.shape[0]

  def chunk(carry):
    k, state, positions_BxUxM = carry
    sel = frames.select(valid_BxU & (rank_BxU // frame_batch == k), tokens_BxU, frame_batch)
    position_MxN = _alignment_positions_of_frames(config, variables, methods, x_BxTxF,
                                                  intermediates, sel)
    start_N = model.window_start(specs, sel.position_N)
    aligned_MxNxWxF = jax.vmap(
        lambda p: cut_aligned(x_BxTxF, frames_B, sel.utterance_N, start_N, p, fill)
    )(position_MxN)
    fold_methods = jax.vmap(fold, in_axes=(0, 0, 0, None))
    letter_N = sel.token_N - vocab.LETTER_IDS[0]
    letters = fold_methods(state.letters, aligned_MxNxWxF,
                           jnp.broadcast_to(letter_N, position_MxN.shape), sel.valid_N)
    phonemes = state.phonemes
    if phonemes.count.shape[-1]:
      phoneme_MxN = phonemes_BxT[sel.utterance_N[None], start_N[None] + position_MxN]
      phonemes = fold_methods(phonemes, aligned_MxNxWxF, phoneme_MxN, sel.valid_N)
    row_N = jnp.where(sel.valid_N, sel.utterance_N, num_rows)  # filler entries are dropped
    positions_BxUxM = positions_BxUxM.at[row_N, sel.position_N].set(position_MxN.T,
                                                                     mode='drop')
    return k + 1, PassState(letters, phonemes), positions_BxUxM

  positions = jnp.full(valid_BxU.shape + (len(methods),), -1, jnp.int32)
  _, state, positions = jax.lax.while_loop(lambda carry: carry[0] < num_chunks, chunk,
                                           (jnp.int32(0), state, positions))
  return state, tokens_BxU, positions


@functools.lru_cache(maxsize=8)
def make_pass_step(config: ml_collections.FrozenConfigDict, mesh: Mesh, methods: tuple[str, ...],
                   fill: str, frame_batch: int):
  """`step(variables, state_D, audio, lengths, weights, phonemes) -> (state_D, tokens, positions)`.

  `fold_batch` on every device of the 1-D `mesh` for its rows of the batch; `state_D` holds one
  partial state per device (leading axis split over the mesh), so devices never talk during a
  pass. Jitted and cached per (config, mesh, methods, fill, frame_batch).
  """
  for method in methods:
    _check_choice('alignment method', method, ALIGNMENTS)
  _check_choice('fill', fill, FILLS)
  if frame_batch < 1:
    raise ValueError(f'frame_batch must be >= 1, got {frame_batch}.')
  rows = P(parallel.DATA_AXIS)

  def per_device(variables, state, audio_BxN, lengths_B, weights_B, phonemes_BxT):
    state = jax.tree.map(lambda a: a[0], state)
    state, tokens, positions = fold_batch(config, variables, state, audio_BxN, lengths_B,
                                          weights_B, phonemes_BxT, methods=methods, fill=fill,
                                          frame_batch=frame_batch)
    return jax.tree.map(lambda a: a[None], state), tokens, positions

  step = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), rows, rows, rows, rows, rows),
                       out_specs=(rows, rows, rows), check_vma=False)
  return jax.jit(step, donate_argnums=1)


def reduce_devices(state_D: PassState, mesh: Mesh) -> PassState:
  """Merges the per-device partial states (leading axis) into one replicated state.

  Pairwise `combine` in device order, jitted with the leading axis split over the mesh, so
  the merge is a cross-device reduction; empty partial states change no bit of the result.
  """
  return _device_functions(mesh)[0](state_D)


def spread_devices(state: PassState, mesh: Mesh) -> PassState:
  """Per-device states that merge to `state`: `state` on the first device, empty on the others."""
  return _device_functions(mesh)[1](state)


@functools.lru_cache(maxsize=8)
def _device_functions(mesh: Mesh):
  def reduce(state_D):
    parts = [jax.tree.map(lambda a, d=d: a[d], state_D) for d in range(mesh.size)]
    return PassState(*(functools.reduce(combine, [getattr(p, f) for p in parts])
                       for f in PassState._fields))

  def spread(state):
    return jax.tree.map(
        lambda a: jnp.concatenate([a[None], jnp.zeros((mesh.size - 1,) + a.shape, a.dtype)]),
        state)

  return (jax.jit(reduce, out_shardings=parallel.replicated(mesh)),
          jax.jit(spread, out_shardings=parallel.batch_sharded(mesh)))


# --- Host side: timings, phoneme tracks, the resumable loop ----------------------------------


def find_timings(config: ml_collections.ConfigDict, timing_dir: str = '') -> dict[str, str]:
  """Timing file of every utterance, by utterance id.

  Searches `timing_dir`, or by default the folder of a `folder:` data source (a copy of the
  corpus without its `.timing.json` files can point here at the original). Empty for other
  sources (e.g. real LibriSpeech through TFDS), which have no timings.
  """
  kind, _, root = config.data.source.partition(':')
  if not timing_dir and kind != 'folder':
    return {}
  folder = pathlib.Path(timing_dir or root).expanduser()
  if not folder.is_dir():
    raise ValueError(f'Timing folder {folder} does not exist.')
  suffix = '.timing.json'
  return {p.name[:-len(suffix)]: str(p) for p in sorted(folder.rglob('*' + suffix))}


def phoneme_inventory(timing_paths: Iterable[str]) -> tuple[str, ...]:
  """Sorted phoneme classes (eSpeak mnemonics without stress marks) of some timing files."""
  return tuple(sorted({alignment_quality.phoneme_class(p['phoneme'])
                       for path in timing_paths for p in corpus.read_timing(path)['phonemes']}))


def phoneme_track(timing: dict, classes: Sequence[str], num_frames: int,
                  config: ml_collections.ConfigDict) -> np.ndarray:
  """Class of the phoneme sounding at the centre of every feature frame; -1 for none.

  A phoneme sounds over [start, end); pauses and phonemes outside `classes` give -1.
  """
  times_T = features.frame_to_seconds(np.arange(num_frames), config)
  index = {c: i for i, c in enumerate(classes)}
  track_T = np.full(num_frames, -1, np.int32)
  for p in timing['phonemes']:
    c = index.get(alignment_quality.phoneme_class(p['phoneme']), -1)
    track_T[(times_T >= p['start']) & (times_T < p['end']) & (c >= 0)] = c
  return track_T


@dataclasses.dataclass
class PassResult:
  """What a pass over a split accumulated (numpy), and how much of the split it saw."""
  letters: Moments  # count [M, 26], mean and m2 [M, 26, 206, F]
  phonemes: Moments  # count [M, P], mean and m2 [M, P, 206, F]
  quality: Optional[dict[str, np.ndarray]]  # alignment_quality tally; None without timings
  batches: int
  utterances: int
  timed_utterances: int

  @property
  def frames(self) -> int:
    return int(self.letters.count[0].sum()) if self.letters.count.size else 0


def _save(path: str, state: PassState, quality: Optional[dict[str, np.ndarray]],
          progress: dict[str, int], settings: str) -> None:
  """Writes the pass state to `path` atomically (temporary file, then `os.replace`)."""
  arrays = {f'{group}_{field}': np.asarray(getattr(getattr(state, group), field))
            for group in PassState._fields for field in Moments._fields}
  for key, value in (quality or {}).items():
    arrays[f'quality_{key}'] = value
  arrays.update({k: np.int64(v) for k, v in progress.items()})
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    np.savez(f, settings=np.str_(settings), **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _load(path: str, settings: str):
  """(state, quality, progress) saved at `path` by a pass with the same settings, or None."""
  if not os.path.exists(path):
    return None
  with np.load(path) as saved:
    if str(saved['settings']) != settings:
      raise ValueError(f'{path} holds a pass with other settings:\n  saved: {saved["settings"]}'
                       f'\n  now:   {settings}\nDelete it or choose another output folder.')
    state = PassState(*(Moments(*(saved[f'{group}_{field}'] for field in Moments._fields))
                        for group in PassState._fields))
    quality = {k[len('quality_'):]: saved[k] for k in saved.files if k.startswith('quality_')}
    progress = {k: int(saved[k]) for k in ('batches', 'utterances', 'timed_utterances')}
  return state, quality or None, progress


def _device_arrays(batch: Mapping[str, np.ndarray], mesh: Mesh, timings: Mapping[str, str],
                   phoneme_classes: Sequence[str], config: ml_collections.ConfigDict):
  """The batch's device arrays (rows padded to a multiple of the mesh) and each row's timing."""
  missing = [k for k in ('audio', 'audio_lengths', 'weights', 'id', 'text') if k not in batch]
  if missing:
    raise ValueError(f'NAvAI batches need the fields audio, audio_lengths, weights, id and '
                     f'text (as data.batches yields them); this one lacks {", ".join(missing)}.')
  weights = np.asarray(batch['weights'], np.float32)
  rows = len(weights)
  pad = -rows % mesh.size
  take = np.concatenate([np.arange(rows), np.zeros(pad, np.int64)])
  audio = np.asarray(batch['audio'], np.float32)[take]
  lengths = np.asarray(batch['audio_lengths'], np.int32)[take]
  weights = np.concatenate([weights, np.zeros(pad, np.float32)])
  num_frames = int(features.num_frames(audio.shape[1], config.features.window,
                                       config.features.hop))
  phonemes = np.full((len(take), num_frames), -1, np.int32)
  row_timings = []
  for r in range(rows):
    utt_id = str(batch['id'][r])
    timing = (corpus.read_timing(timings[utt_id])
              if weights[r] > 0 and utt_id in timings else None)
    row_timings.append(timing)
    if timing is not None and phoneme_classes:
      phonemes[r] = phoneme_track(timing, phoneme_classes, num_frames, config)
  sharding = parallel.batch_sharded(mesh)
  arrays = [jax.device_put(a, sharding) for a in (audio, lengths, weights, phonemes)]
  return arrays, row_timings


def run_pass(config: ml_collections.ConfigDict, variables: PyTree,
             batches: Iterable[Mapping[str, np.ndarray]], *,
             methods: Sequence[str] = ALIGNMENTS, fill: str = 'zeros', frame_batch: int = 64,
             phoneme_classes: Sequence[str] = (), timings: Optional[Mapping[str, str]] = None,
             state_path: Optional[str] = None, save_every: int = 20,
             settings: Optional[Mapping[str, Any]] = None, mesh: Optional[Mesh] = None,
             progress: bool = False) -> PassResult:
  """NAvAI over a stream of utterance batches, sharded over `mesh`, resumable.

  Args:
    config: the experiment config.
    variables: model variables ({'params', 'batch_stats'}).
    batches: `data.batches(..., train=False)`-style dicts ('audio', 'audio_lengths',
      'weights', 'id', 'text'), in the same order on every run (a resumed pass skips the
      batches it already folded).
    methods: alignment methods, a subset of ALIGNMENTS.
    fill: 'zeros' (the paper) or 'recut' (see the module docstring).
    frame_batch: frames per attribution chunk (fixed shape; trades memory for speed).
    phoneme_classes: phoneme classes to accumulate (see `phoneme_inventory`); () for none.
    timings: utterance id -> `.timing.json` path (`find_timings`); enables phoneme classes
      and the alignment quality of `alignment_quality`.
    state_path: where the pass saves its state every `save_every` batches and at the end, and
      from where a rerun resumes; None for no saving.
    save_every: batches between merges of the device states (and saves).
    settings: anything else that must match for a saved state to be resumed (checkpoint step,
      split, ...); stored with the state.
    mesh: a 1-D device mesh (default: all local devices).
    progress: show a progress bar.
  """
  if save_every < 1:
    raise ValueError(f'save_every must be >= 1, got {save_every}.')
  mesh = mesh or parallel.make_mesh(jax.local_devices())
  methods, timings = tuple(methods), dict(timings or {})
  step = make_pass_step(ml_collections.FrozenConfigDict(config), mesh, methods, fill,
                        frame_batch)
  fingerprint = json.dumps(dict(settings or {}, methods=methods, fill=fill,
                                phoneme_classes=list(phoneme_classes), save_every=save_every,
                                timed=bool(timings)), sort_keys=True, default=str)
  saved = _load(state_path, fingerprint) if state_path else None
  if saved is None:
    state = empty_pass_state(len(methods), len(phoneme_classes), config.features.num_mels)
    quality = alignment_quality.empty_tally(len(methods)) if timings else None
    done = {'batches': 0, 'utterances': 0, 'timed_utterances': 0}
  else:
    state, quality, done = saved
    logging.info('Resuming the NAvAI pass after %d batches from %s.', done['batches'],
                 state_path)
  state_D = spread_devices(jax.tree.map(jnp.asarray, state), mesh)
  variables = parallel.replicate(variables, mesh)
  specs = model.layer_specs(config.model)

  def merge_and_save():
    nonlocal state_D
    merged = reduce_devices(state_D, mesh)
    state_D = spread_devices(merged, mesh)
    if state_path:
      _save(state_path, merged, quality, done, fingerprint)
    return merged

  merged = None
  for i, batch in enumerate(tqdm.tqdm(batches, desc='NAvAI', unit='batch',
                                      disable=not progress)):
    if i < done['batches']:
      continue
    arrays, row_timings = _device_arrays(batch, mesh, timings, phoneme_classes, config)
    state_D, tokens_BxU, positions_BxUxM = step(variables, state_D, *arrays)
    real = np.asarray(batch['weights']) > 0
    done['utterances'] += int(real.sum())
    if quality is not None:
      tokens_BxU, positions_BxUxM = np.asarray(tokens_BxU), np.asarray(positions_BxUxM)
      frames_B = features.num_frames(np.asarray(batch['audio_lengths']),
                                     config.features.window, config.features.hop)
      for r, timing in enumerate(row_timings):
        if timing is None:
          continue
        length = int(model.output_length(specs, int(frames_B[r])))
        alignment_quality.add_to_tally(quality, alignment_quality.score_utterance(
            tokens_BxU[r, :length], positions_BxUxM[r, :length], str(batch['text'][r]),
            timing, config))
        done['timed_utterances'] += 1
    done['batches'] = i + 1
    merged = None
    if done['batches'] % save_every == 0:
      merged = merge_and_save()
  if merged is None:
    merged = merge_and_save()
  letters, phonemes = (jax.tree.map(np.asarray, m) for m in merged)
  return PassResult(Moments(*letters), Moments(*phonemes), quality, done['batches'],
                    done['utterances'], done['timed_utterances'])


# --- Results and figures (SPEC §8.4, §8.6, §9) ------------------------------------------------

LETTERS = alignment_quality.LETTERS  # 'a'..'z', the letter classes in order


def results(result: PassResult, methods: Sequence[str],
            phoneme_classes: Sequence[str]) -> dict[str, np.ndarray]:
  """The arrays of a pass's NAvAI results (see `summarize`), keyed for an `.npz` file.

  `letter_*` arrays are `[M, 26, ...]` and `phoneme_*` arrays `[M, P, ...]` with M the
  methods; `all_letter_mean` / `all_phoneme_mean` are `[M, 206, F]`.
  """
  out = {'methods': np.array(methods), 'letters': np.array(list(LETTERS)),
         'phoneme_classes': np.array(phoneme_classes, dtype=str)}
  for kind, moments in (('letter', result.letters), ('phoneme', result.phonemes)):
    s = summarize(Moments(*(jnp.asarray(a) for a in moments)))
    out.update({f'{kind}_count': s['count'], f'{kind}_mean': s['mean'],
                f'all_{kind}_mean': s['all_mean'], f'all_{kind}_count': s['all_count'],
                f'{kind}_normalized': s['normalized'], f'{kind}_tmap': s['tmap']})
  return out


def _panel(ax, map_TxF: Optional[np.ndarray], config: ml_collections.ConfigDict,
           title: str) -> None:
  """One map scaled to absolute maximum 1, or an empty labelled panel when it has no frames."""
  if map_TxF is None or not np.all(np.isfinite(map_TxF)):
    ax.set_title(title, fontsize='small')
    ax.text(0.5, 0.5, 'no frames', ha='center', va='center', transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return
  plotting.show_map(ax, map_TxF, config, title)
  ax.title.set_fontsize('small')
  ax.axvline(CENTRE, color='0.4', lw=0.5, ls=':')


def _figure(rows: int, cols: int, width: float = 2.6, height: float = 2.2):
  fig = matplotlib.figure.Figure(figsize=(width * cols, height * rows), layout='constrained')
  return fig, fig.subplots(rows, cols, squeeze=False)


def plot_figure3(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], path: str,
                 letters: Sequence[str] = ('a', 't')) -> None:
  """The paper's Figure 3: rows mean of each letter, all-letter mean, normalized patterns;
  one column per alignment method."""
  methods = [str(m) for m in res['methods']]
  index = [LETTERS.index(c) for c in letters]
  rows = ([(f'mean {c}', lambda m, i=i: res['letter_mean'][m, i]) for c, i in zip(letters, index)]
          + [('mean, all letters', lambda m: res['all_letter_mean'][m])]
          + [(f'normalized {c}', lambda m, i=i: res['letter_normalized'][m, i])
             for c, i in zip(letters, index)])
  fig, axes = _figure(len(rows), len(methods))
  for r, (name, get) in enumerate(rows):
    for m, method in enumerate(methods):
      _panel(axes[r, m], get(m), config, f'{name} | {method}')
  fig.savefig(path, dpi=110)


def plot_patterns(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], method: int,
                  path: str, kind: str = 'letter', classes: Optional[Sequence[str]] = None,
                  cols: int = 7) -> None:
  """Supplement A: the normalized pattern of every class (letters a-z) under one method."""
  names = [str(c) for c in res['letters' if kind == 'letter' else 'phoneme_classes']]
  classes = names if classes is None else list(classes)
  fig, axes = _figure(-(-len(classes) // cols), cols)
  for k, name in enumerate(classes):
    ax = axes.flat[k]
    if name not in names:
      _panel(ax, None, config, f'{name} (never seen)')
      continue
    i = names.index(name)
    count = int(res[f'{kind}_count'][method, i])
    _panel(ax, res[f'{kind}_normalized'][method, i] if count else None, config,
           f'{name}  ({count} frames)')
  for ax in axes.flat[len(classes):]:
    ax.set_axis_off()
  fig.suptitle(f'normalized {kind} patterns, alignment {res["methods"][method]}')
  fig.savefig(path, dpi=100)


def plot_tmaps(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], method: int,
               path: str, kind: str = 'letter', pairs_per_row: int = 4) -> None:
  """Each class's normalized pattern beside its Welch t-map against all frames (one method).

  The t-maps share one colour scale, ± the 99th percentile of |t| over all classes.
  """
  names = [str(c) for c in res['letters' if kind == 'letter' else 'phoneme_classes']]
  tmaps = res[f'{kind}_tmap'][method]
  finite = np.abs(tmaps[np.isfinite(tmaps)])
  limit = float(np.percentile(finite, 99)) if finite.size else 1.0
  fig, axes = _figure(-(-len(names) // pairs_per_row), 2 * pairs_per_row)
  image = None
  for k, name in enumerate(names):
    left, right = axes.flat[2 * k], axes.flat[2 * k + 1]
    count = int(res[f'{kind}_count'][method, k])
    _panel(left, res[f'{kind}_normalized'][method, k] if count else None, config,
           f'{name}: pattern ({count})')
    if count < 2 or not np.all(np.isfinite(tmaps[k])):
      _panel(right, None, config, f'{name}: t')
      continue
    image = right.imshow(tmaps[k].T, origin='lower', aspect='auto', interpolation='nearest',
                         cmap=plotting.DIVERGING_CMAP, vmin=-limit, vmax=limit)
    positions, labels = plotting.hz_ticks(config)
    right.set_yticks(positions, labels)
    right.set_title(f'{name}: Welch t', fontsize='small')
  for ax in axes.flat[2 * len(names):]:
    ax.set_axis_off()
  if image is not None:
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.5, label='t')
  fig.suptitle(f'{kind} patterns and t-maps against all {kind} frames, alignment '
               f'{res["methods"][method]}')
  fig.savefig(path, dpi=90)


def plot_phonemes(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
                  phonemes: Sequence[str], path: str) -> None:
  """Normalized patterns of phoneme classes (rows) under every alignment method (columns)."""
  names = [str(c) for c in res['phoneme_classes']]
  methods = [str(m) for m in res['methods']]
  fig, axes = _figure(len(phonemes), len(methods))
  for r, name in enumerate(phonemes):
    i = names.index(name) if name in names else None
    for m, method in enumerate(methods):
      count = 0 if i is None else int(res['phoneme_count'][m, i])
      _panel(axes[r, m], res['phoneme_normalized'][m, i] if count else None, config,
             f'/{name}/ ({count}) | {method}')
  fig.savefig(path, dpi=100)
