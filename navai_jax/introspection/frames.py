"""Spectrogram frames for introspection (SPEC §4, paper §3.3).

A frame is the `[206, 128]` receptive window of one output position whose arg-max token is a
letter a-z and whose window lies entirely inside its utterance. The model runs once per batch
of utterances (SAME padding, batch norm in inference mode); every frame of an utterance shares
that pass.

Two forms:

* fixed shapes, for `jit` and `lax.scan` folds: `frame_mask` -> `valid_BxU`, `tokens_BxU`;
  `select(..., max_frames)` -> padded `Selection` with a validity flag; `gather_windows` and
  `window_activations` slice windows and per-layer activations out of the shared pass;
* convenience, in NumPy: `collect` -> `Frames` (windows, tokens, utterance index and id,
  positions), `of_letter` and `find_letter`.
"""

import dataclasses
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any


def check_windows(config: ml_collections.ConfigDict, windows: Array, *, batched: bool) -> None:
  """Raises ValueError unless `windows` is one `[206, F]` window (or `[N, 206, F]` if batched)."""
  expected = (model.RECEPTIVE_FIELD, config.features.num_mels)
  shape = tuple(np.shape(windows))
  ok = len(shape) == (3 if batched else 2) and shape[-2:] == expected
  if not ok:
    want = f'[N, {expected[0]}, {expected[1]}]' if batched else f'[{expected[0]}, {expected[1]}]'
    raise ValueError(f'expected {"windows" if batched else "a window"} of shape {want} '
                     f'(receptive field x mel bins), got {list(shape)}')


def _check_batch(config: ml_collections.ConfigDict, x_BxTxF: Array, frames_B: Array) -> None:
  if np.ndim(x_BxTxF) != 3 or np.shape(x_BxTxF)[2] != config.features.num_mels:
    raise ValueError(f'expected features of shape [B, T, {config.features.num_mels}], '
                     f'got {list(np.shape(x_BxTxF))}')
  if np.shape(frames_B) != np.shape(x_BxTxF)[:1]:
    raise ValueError(f'expected one frame count per utterance, shape [{np.shape(x_BxTxF)[0]}], '
                     f'got {list(np.shape(frames_B))}')


def frame_mask(config: ml_collections.ConfigDict, logits_BxUxV: Array, frames_B: Array
               ) -> tuple[Array, Array]:
  """Which output positions are frames, and the arg-max token of every position.

  Args:
    config: the experiment config.
    logits_BxUxV: logits of the SAME-padded pass.
    frames_B: real (unpadded) input frames per utterance.
  Returns:
    `(valid_BxU, tokens_BxU)`: valid where the token is a letter a-z and the window
    `[window_start, window_start + 206)` lies inside `[0, frames_b)`.
  """
  specs = model.layer_specs(config.model)
  tokens_BxU = jnp.argmax(logits_BxUxV, axis=-1)
  start_U = model.window_start(specs, jnp.arange(logits_BxUxV.shape[1]))
  inside_BxU = (start_U >= 0)[None] & (start_U + model.RECEPTIVE_FIELD <= frames_B[:, None])
  letter_BxU = (tokens_BxU >= vocab.LETTER_IDS[0]) & (tokens_BxU <= vocab.LETTER_IDS[-1])
  return inside_BxU & letter_BxU, tokens_BxU


class Selection(NamedTuple):
  """Up to `max_frames` frames of a batch, padded; entries with `valid_N` False are filler."""
  utterance_N: Array
  position_N: Array
  token_N: Array
  valid_N: Array
  num_found: Array  # Frames in the batch; more than max_frames means some were left out.


def select(valid_BxU: Array, tokens_BxU: Array, max_frames: int) -> Selection:
  """Fixed-capacity list of the frames of `frame_mask`, in utterance-then-position order."""
  utterance_N, position_N = jnp.nonzero(valid_BxU, size=max_frames, fill_value=0)
  num_found = jnp.sum(valid_BxU)
  valid_N = jnp.arange(max_frames) < num_found
  token_N = jnp.where(valid_N, tokens_BxU[utterance_N, position_N], vocab.BLANK)
  return Selection(utterance_N, position_N, token_N, valid_N, num_found)


def _slice_rows(source_BxTxC: Array, utterance_N: Array, start_N: Array, length: int) -> Array:
  """`source[b, start:start + length]` for every (b, start); starts are clamped into range."""
  def one(b, start):
    return jax.lax.dynamic_slice_in_dim(source_BxTxC[b], start, length, axis=0)
  return jax.vmap(one)(utterance_N, start_N)


def gather_windows(config: ml_collections.ConfigDict, x_BxTxF: Array, utterance_N: Array,
                   position_N: Array) -> Array:
  """The `[N, 206, F]` input windows of the given output positions."""
  specs = model.layer_specs(config.model)
  return _slice_rows(x_BxTxF, utterance_N, model.window_start(specs, position_N),
                     model.RECEPTIVE_FIELD)


def window_activations(config: ml_collections.ConfigDict, x_BxTxF: Array,
                       intermediates: dict[str, dict[str, Array]], utterance_N: Array,
                       position_N: Array) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
  """Per-layer inputs and conv outputs of each frame, sliced from the SAME-padded pass.

  For a window inside its utterance these equal the VALID pass of the window alone (a test
  holds them to it), so LRP of many frames needs one forward pass per utterance.

  Returns:
    `(inputs, pre)`: `inputs[l]` is `[N, L_in, C]`, the input of layer l+1 over the frame's
    window (the spectrogram window for layer 1); `pre[l]` is `[N, L_out, D]`, its conv output.
  """
  specs = model.layer_specs(config.model)
  inputs, pre = [], []
  for i, spec in enumerate(specs):
    source = x_BxTxF if i == 0 else intermediates[specs[i - 1].name]['act']
    inputs.append(_slice_rows(source, utterance_N, model.window_start(specs[i:], position_N),
                              model.receptive_field(specs[i:])))
    pre.append(_slice_rows(intermediates[spec.name]['pre'], utterance_N,
                           model.window_start(specs[i + 1:], position_N),
                           model.receptive_field(specs[i + 1:])))
  return tuple(inputs), tuple(pre)


@dataclasses.dataclass
class Frames:
  """Frames of a batch of utterances, in NumPy (the convenience form)."""
  windows_NxWxF: np.ndarray
  tokens_N: np.ndarray
  utterance_N: np.ndarray
  positions_N: np.ndarray
  ids: list[str]  # Utterance id of every frame.

  def __len__(self) -> int:
    return len(self.tokens_N)

  @property
  def letters(self) -> list[str]:
    return [vocab.letter_of(int(t)) for t in self.tokens_N]

  def take(self, index: Sequence[int] | np.ndarray) -> 'Frames':
    index = np.asarray(index, int)
    return Frames(self.windows_NxWxF[index], self.tokens_N[index], self.utterance_N[index],
                  self.positions_N[index], [self.ids[i] for i in index])


def collect(config: ml_collections.ConfigDict, variables: PyTree, x_BxTxF: Array,
            frames_B: Array, ids: Optional[Sequence[str]] = None) -> Frames:
  """All frames of a batch of utterances (one forward pass for the batch)."""
  _check_batch(config, x_BxTxF, frames_B)
  ids = [str(i) for i in range(len(frames_B))] if ids is None else [str(i) for i in ids]
  if len(ids) != len(frames_B):
    raise ValueError(f'got {len(ids)} utterance ids for {len(frames_B)} utterances')
  logits, _ = model.apply_inference(config, variables, jnp.asarray(x_BxTxF),
                                    frames_B=jnp.asarray(frames_B))
  valid, tokens = frame_mask(config, logits, jnp.asarray(frames_B))
  utterance_N, position_N = np.nonzero(np.asarray(valid))
  windows = gather_windows(config, jnp.asarray(x_BxTxF), utterance_N, position_N)
  return Frames(np.asarray(windows), np.asarray(tokens)[utterance_N, position_N], utterance_N,
                position_N, [ids[b] for b in utterance_N])


def of_letter(frames: Frames, letter: str) -> Frames:
  """The frames predicted as `letter`; a clear error if there are none."""
  index = np.flatnonzero(frames.tokens_N == vocab.letter_id(letter))
  if not len(index):
    seen = ', '.join(sorted(set(frames.letters))) or 'none'
    raise ValueError(f'letter {letter!r} is never predicted in these utterances '
                     f'(letters predicted: {seen})')
  return frames.take(index)


def concatenate(parts: Sequence[Frames]) -> Frames:
  """The frames of several `Frames` in order (utterance indices stay those of each batch)."""
  return Frames(np.concatenate([p.windows_NxWxF for p in parts]),
                np.concatenate([p.tokens_N for p in parts]),
                np.concatenate([p.utterance_N for p in parts]),
                np.concatenate([p.positions_N for p in parts]), sum((p.ids for p in parts), []))


def collect_some(config: ml_collections.ConfigDict, variables: PyTree,
                 feature_batches: Iterable[tuple[Array, Array, Sequence[str]]],
                 count: int = 1) -> Frames:
  """The frames of the first batches that hold at least `count` of them (all, if fewer).

  A weak model predicts a letter in few utterances, so one batch may hold none: this reads on
  until it has `count`. Raises a ValueError saying so when the model predicts no letter at all
  in the data.
  """
  if count < 1:
    raise ValueError(f'count must be >= 1, got {count}')
  parts, utterances = [], 0
  for x_BxTxF, frames_B, ids in feature_batches:
    parts.append(collect(config, variables, x_BxTxF, frames_B, ids))
    utterances += len(ids)
    if sum(map(len, parts)) >= count:
      break
  if not sum(map(len, parts)):
    raise ValueError(f'the model predicts no letter (a-z) at any position of the '
                     f'{utterances} utterances read, so there is no frame to explain: it is too '
                     'weak (train it longer), or the data is not speech it knows.')
  return concatenate([p for p in parts if len(p)])


def find_letter(config: ml_collections.ConfigDict, variables: PyTree,
                feature_batches: Iterable[tuple[Array, Array, Sequence[str]]], letter: str,
                count: int, *, skip: int = 0, first_per_utterance: bool = True,
                utterance: Optional[str] = None) -> Frames:
  """Frames predicted as `letter`, in data order, reading the batches only as far as needed.

  Args:
    feature_batches: `(x_BxTxF, frames_B, ids)` batches (`features.of_batch`).
    letter: a-z.
    count: how many frames to return (fewer if the data has fewer).
    skip: leave out this many frames first (the `skip`-th frame is the first returned).
    first_per_utterance: take only the first frame of the letter in each utterance.
    utterance: take the frames of this utterance id only (all of them).
  Raises:
    ValueError: a bad letter, an utterance that is not in the data, or fewer than `skip + 1`
      frames of the letter.
  """
  token = vocab.letter_id(letter)
  if count < 1 or skip < 0:
    raise ValueError(f'count must be >= 1 and skip >= 0, got {count} and {skip}')
  chosen, predicted, utterance_seen = [], set(), False
  for x_BxTxF, frames_B, ids in feature_batches:
    found = collect(config, variables, x_BxTxF, frames_B, ids)
    if utterance is not None:
      found = found.take([i for i, u in enumerate(found.ids) if u == utterance])
      utterance_seen |= utterance in ids
    predicted |= set(found.letters)
    index = np.flatnonzero(found.tokens_N == token)
    if first_per_utterance and utterance is None:
      _, first = np.unique(found.utterance_N[index], return_index=True)
      index = index[np.sort(first)]
    chosen.append(found.take(index))
    if utterance_seen or sum(map(len, chosen)) >= skip + count:
      break
  if utterance is not None and not utterance_seen:
    raise ValueError(f'utterance {utterance!r} is not in the data')
  total = sum(map(len, chosen))
  if not total:
    where = 'these utterances' if utterance is None else f'utterance {utterance!r}'
    raise ValueError(f'letter {letter!r} is never predicted in {where} (letters predicted: '
                     f'{", ".join(sorted(predicted)) or "none"})')
  if total <= skip:
    raise ValueError(f'the data has {total} frames predicted as {letter!r}, so no frame '
                     f'number {skip}')
  return concatenate(chosen).take(np.arange(skip, min(total, skip + count)))
