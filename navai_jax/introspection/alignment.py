"""Alignment of NAvAI frames (paper §3.6, SPEC §8.2-3).

Every frame gets an alignment position `p` in [0, 206):

* `none`: the centre column 103 (no alignment);
* `sensitivity_min` / `sensitivity_max`: the time index of the smallest / largest element of the
  whole `[206, F]` sensitivity map (paper eq. 1); ties go to the earliest element;
* `lrp_max`: the time index of the largest element of the LRP relevance map (rule 'paper',
  eqs. 2-5).

Each method is one entry of `DEFINITIONS`: the map it reads and the function that finds its
position; the NAvAI pass, the layer profiles and the config's rules all read that table.

The frame is then shifted so that column `p` lands on column 103 (SPEC §8.3). With
`fill='zeros'` the columns shifted in are zeros, as in the paper ("crops the frame on one side";
zero is the mean of a z-normalized spectrogram). With `fill='recut'` the aligned window is cut
from the utterance itself, so the shifted-in columns hold the real neighbouring spectrogram
where the utterance has it (zeros only where it runs out) - not in the paper.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from navai_jax.recognizer import model

Array = jax.Array

WINDOW = model.RECEPTIVE_FIELD
CENTRE = WINDOW // 2  # 103: the column an aligned position is moved to.
FILLS = ('zeros', 'recut')


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  """ValueError naming `value` and the valid `choices` unless `value` is one of them."""
  if value not in choices:
    raise ValueError(f'Unknown {name} {value!r}; choose one of {", ".join(choices)}.')


def time_of_max(map_NxWxF: Array) -> Array:
  """Time index of the largest element of each `[W, F]` map (the earliest on ties)."""
  n, _, f = map_NxWxF.shape
  return (jnp.argmax(map_NxWxF.reshape(n, -1), axis=1) // f).astype(jnp.int32)


def time_of_min(map_NxWxF: Array) -> Array:
  """Time index of the smallest element of each `[W, F]` map (the earliest on ties)."""
  n, _, f = map_NxWxF.shape
  return (jnp.argmin(map_NxWxF.reshape(n, -1), axis=1) // f).astype(jnp.int32)


def centre(map_NxWxF: Array) -> Array:
  """The centre column 103 for every frame (no alignment)."""
  return jnp.full(map_NxWxF.shape[:1], CENTRE, jnp.int32)


class Alignment(NamedTuple):
  """An alignment method: the attribution map it reads (None: none) and where it puts a frame."""
  map: Optional[str]  # 'sensitivity' (paper eq. 1) or 'lrp' (eqs. 3-4, rule 'paper')
  position: Callable[[Array], Array]  # map_NxWxF -> p_N in [0, 206)


# Every alignment method, one entry each (paper §3.6, SPEC §8.2).
DEFINITIONS: dict[str, Alignment] = {
    'none': Alignment(None, centre),
    'sensitivity_min': Alignment('sensitivity', time_of_min),
    'sensitivity_max': Alignment('sensitivity', time_of_max),
    'lrp_max': Alignment('lrp', time_of_max),
}
ALIGNMENTS = tuple(DEFINITIONS)


def maps_needed(methods: tuple[str, ...]) -> set[str]:
  """The attribution maps ('sensitivity', 'lrp') that the alignment `methods` read."""
  for method in methods:
    check_choice('alignment method', method, ALIGNMENTS)
  return {DEFINITIONS[m].map for m in methods} - {None}


def alignment_positions(method: str, maps: dict[str, Array], num_frames: int) -> Array:
  """Alignment position `p_N` in [0, 206) of every frame for one alignment method.

  Args:
    method: one of ALIGNMENTS.
    maps: the attribution maps `[N, W, F]` by name ('sensitivity', 'lrp'; `maps_needed`).
    num_frames: N.
  """
  check_choice('alignment method', method, ALIGNMENTS)
  definition = DEFINITIONS[method]
  if definition.map is None:
    return definition.position(jnp.zeros((num_frames, 1, 1)))
  if maps.get(definition.map) is None:
    raise ValueError(f'Alignment {method!r} needs its attribution map, which was not given.')
  return definition.position(maps[definition.map])


def cut_aligned(x_BxTxF: Array, frames_B: Array, utterance_N: Array, start_N: Array,
                position_N: Array, fill: str = 'zeros', width: int = WINDOW) -> Array:
  """Aligned frames `[N, width, F]`: column `position_N` of each frame moved to `width // 2`.

  Frame n is the window `x_BxTxF[utterance_N[n], start_N[n]:start_N[n] + width]` (206 input
  frames by default; a layer's positions for the profiles of `layer_profiles`); its aligned
  version reads utterance frame `start + p - width // 2 + t` at column t. With `fill='zeros'`
  only what lies inside the original window is kept (zeros shifted in, the paper's crop); with
  `fill='recut'` everything inside the utterance's `frames_B` frames is kept. A gather with
  clamped indices and a mask, so it has fixed shapes under `jit`.
  """
  check_choice('fill', fill, FILLS)
  t_W = jnp.arange(width)
  shift_N = position_N - width // 2
  source_NxW = start_N[:, None] + shift_N[:, None] + t_W[None]
  keep_NxW = (source_NxW >= 0) & (source_NxW < frames_B[utterance_N][:, None])
  if fill == 'zeros':
    inside_NxW = t_W[None] + shift_N[:, None]
    keep_NxW &= (inside_NxW >= 0) & (inside_NxW < width)
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
