"""The NAvAI pass over a split: devices, shards, resume and hosts around `navai.fold_batch`.

A pass runs the whole pipeline (features, logits, frames, sensitivity, LRP, all alignments,
accumulation) on a 1-D device mesh: utterance batches are split over the devices, each device
folds its frames into its own partial state (`jax.shard_map`, no communication during the
pass), and every `save_every` batches the partial states are merged across devices (Chan
merges in device order under `jit`, which XLA turns into cross-device transfers) and written
atomically to disk, so that a killed pass resumes with an identical result.

Several processes (hosts, `jax.distributed`): each runs its own pass over its share of the
batches (`data.batches(..., share=(process, processes))`) on its local devices, saves and
resumes its own state file, and at the end the states of all processes are gathered and
merged (`merge_processes`), so every process holds the result of the whole split.
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import tqdm

from navai_jax.core import files
from navai_jax.introspection import alignment_quality
from navai_jax.introspection import concepts
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import moments
from navai_jax.introspection import navai
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import phoneme_times
from navai_jax.training import parallel

PyTree = Any
Moments = moments.Moments
Sums = layer_profiles.Sums
PassState = navai.PassState


@functools.lru_cache(maxsize=8)
def make_pass_step(config: ml_collections.FrozenConfigDict, mesh: Mesh, settings: navai.Settings):
  """`step(variables, state_P, audio, lengths, weights, phonemes, index) -> (state_P, tokens,
  positions)`.

  `navai.fold_batch` on every device of the 1-D `mesh` for its rows of the batch; `state_P`
  holds one partial state per device (leading axis split over the mesh), so devices never talk
  during a pass. Jitted and cached per (config, mesh, settings).
  """
  settings.check(model.layer_specs(config.model))
  rows = P(parallel.DATA_AXIS)

  def per_device(variables, state, audio_BxA, lengths_B, weights_B, phonemes_BxT, index_B):
    state = jax.tree.map(lambda a: a[0], state)
    state, tokens, positions = navai.fold_batch(config, variables, state, audio_BxA, lengths_B,
                                                weights_B, phonemes_BxT, settings, index_B)
    return jax.tree.map(lambda a: a[None], state), tokens, positions

  step = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), rows, rows, rows, rows, rows, rows),
                       out_specs=(rows, rows, rows), check_vma=False)
  return jax.jit(step, donate_argnums=1)


def reduce_devices(state_P: PassState, mesh: Mesh) -> PassState:
  """Merges the per-device partial states (leading axis) into one replicated state.

  Pairwise `combine` in device order, jitted with the leading axis split over the mesh, so
  the merge is a cross-device reduction; empty partial states change no bit of the result.
  """
  return _device_functions(mesh)[0](state_P)


def spread_devices(state: PassState, mesh: Mesh) -> PassState:
  """Per-device states that merge to `state`: `state` on the first device, empty ones
  (`navai.blank_like`) on the others."""
  return _device_functions(mesh)[1](state)


@functools.lru_cache(maxsize=8)
def _device_functions(mesh: Mesh):
  def reduce(state_P):
    parts = [jax.tree.map(lambda a, d=d: a[d], state_P) for d in range(mesh.size)]
    return functools.reduce(navai.combine_states, parts)

  def spread(state):
    return jax.tree.map(
        lambda a, b: jnp.concatenate([a[None], jnp.broadcast_to(b, (mesh.size - 1,) + b.shape)]),
        state, navai.blank_like(state))

  return (jax.jit(reduce, out_shardings=parallel.replicated(mesh)),
          jax.jit(spread, out_shardings=parallel.batch_sharded(mesh)))


@dataclasses.dataclass
class PassResult:
  """What a pass over a split accumulated (numpy), and how much of the split it saw."""
  letters: Moments  # count [M, 26], mean and m2 [M, 26, W, F]
  phonemes: Moments  # count [M, Y], mean and m2 [M, Y, W, F]
  quality: Optional[dict[str, np.ndarray]]  # alignment_quality tally; None without timings
  batches: int
  utterances: int
  timed_utterances: int
  layer_letters: tuple[Sums, ...] = ()  # per profiled layer, see PassState
  layer_phonemes: tuple[Sums, ...] = ()
  zero_maps: Optional[np.ndarray] = None  # [M] frames left out per method (all-zero map)
  concept_letters: tuple[concepts.Shares, ...] = ()  # per concept layer, see PassState
  concept_phonemes: tuple[concepts.Shares, ...] = ()
  references: tuple[concepts.References, ...] = ()
  channel_letters: Optional[Moments] = None  # see PassState

  @property
  def frames(self) -> int:
    """Letter frames seen (under every method: folded or left out for an all-zero map)."""
    if not self.letters.count.size:
      return 0
    return int(self.letters.count[0].sum()) + int(self.zero_maps[0])


def _save(path: str, state: PassState, quality: Optional[dict[str, np.ndarray]],
          progress: dict[str, int], settings: str) -> None:
  """Writes the pass state to `path` atomically (temporary file, then `os.replace`)."""
  arrays = {f'{key}_{field}': np.asarray(value)
            for key, part in _named_parts(state) for field, value in part._asdict().items()}
  for key, value in (quality or {}).items():
    arrays[f'quality_{key}'] = value
  arrays['zero_maps'] = np.asarray(state.zero_maps)
  arrays.update({k: np.int64(v) for k, v in progress.items()})
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic(path) as tmp, open(tmp, 'wb') as f:
    np.savez(f, settings=np.str_(settings), **arrays)


def _named_parts(state: PassState) -> list[tuple[str, Any]]:
  """('letters', ...), ('phonemes', ...), ('layer_letters0', ...), ...: every part of a state."""
  named = [('letters', state.letters), ('phonemes', state.phonemes)]
  for group in ('layer_letters', 'layer_phonemes', 'concept_letters', 'concept_phonemes',
                'references'):
    named += [(f'{group}{i}', m) for i, m in enumerate(getattr(state, group))]
  if state.channel_letters is not None:
    named.append(('channel_letters', state.channel_letters))
  return named


def fingerprint(tree: PyTree) -> str:
  """SHA-256 of every array of `tree` (shapes, dtypes, bytes, in tree order)."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    leaf = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def _load(path: str, settings: str):
  """(state, quality, progress) saved at `path` by a pass with the same settings, or None.

  A state saved by a pass with other weights or settings is not resumed: the pass starts
  anew, says so, and overwrites it at its first save.
  """
  if not os.path.exists(path):
    return None
  with np.load(path) as saved:
    if str(saved['settings']) != settings:
      old, new = json.loads(str(saved['settings'])), json.loads(settings)
      changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
      print(f'{path} holds a pass of other {", ".join(changed)}; starting the pass anew.')
      return None
    read = lambda key, kind: kind(*(saved[f'{key}_{field}'] for field in kind._fields))
    count = lambda group, last='_count': sum(1 for k in saved.files if k.startswith(group) and
                                             k.endswith(last))
    num_layers, num_concepts = count('layer_letters'), count('concept_letters')
    state = PassState(read('letters', Moments), read('phonemes', Moments),
                      tuple(read(f'layer_letters{i}', Sums) for i in range(num_layers)),
                      tuple(read(f'layer_phonemes{i}', Sums) for i in range(num_layers)),
                      saved['zero_maps'] if 'zero_maps' in saved.files else  # older files
                      np.zeros(saved['letters_count'].shape[0], np.int32),
                      tuple(read(f'concept_letters{i}', Sums)
                            for i in range(num_concepts)),
                      tuple(read(f'concept_phonemes{i}', Sums)
                            for i in range(num_concepts)),
                      tuple(read(f'references{i}', concepts.References)
                            for i in range(count('references', '_score'))),
                      read('channel_letters', Moments)
                      if 'channel_letters_count' in saved.files else None)
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
  index = (np.asarray(batch['index'], np.int32)[take] if 'index' in batch
           else np.full(len(take), -1, np.int32))
  num_frames = int(features.num_frames(audio.shape[1], config.features.window,
                                       config.features.hop))
  phonemes = np.full((len(take), num_frames), -1, np.int32)
  row_timings = []
  for r in range(rows):
    utt_id = str(batch['id'][r])
    times = (phoneme_times.read_timing(timings[utt_id])
             if weights[r] > 0 and utt_id in timings else None)
    row_timings.append(times)
    if times is not None and phoneme_classes:
      phonemes[r] = phoneme_times.phoneme_track(times, phoneme_classes, num_frames, config)
  sharding = parallel.batch_sharded(mesh)
  arrays = [jax.device_put(a, sharding) for a in (audio, lengths, weights, phonemes, index)]
  return arrays, row_timings


def run_pass(config: ml_collections.ConfigDict, variables: PyTree,
             batches: Iterable[Mapping[str, np.ndarray]] | Callable[
                 [int], Iterable[Mapping[str, np.ndarray]]],
             settings: navai.Settings = navai.Settings(), *,
             phoneme_classes: Sequence[str] = (), timings: Optional[Mapping[str, str]] = None,
             state_path: Optional[str] = None, save_every: int = 20,
             resume_key: Optional[Mapping[str, Any]] = None, mesh: Optional[Mesh] = None,
             progress: bool = False) -> PassResult:
  """NAvAI over a stream of utterance batches, sharded over `mesh`, resumable.

  Args:
    config: the experiment config.
    variables: model variables ({'params', 'batch_stats'}).
    batches: `data.batches(..., train=False)`-style dicts ('audio', 'audio_lengths',
      'weights', 'id', 'text'), in the same order on every run; or a function of the number
      of batches already folded that yields the batches after them (`data.batches(...,
      start_step=k)`), so that a resumed pass does not read the batches it already folded
      (an iterable is read from its start and those batches skipped).
    settings: what is computed for every frame (`navai.Settings`: alignment methods, fill,
      frame batch, profiled layers and their alignments).
    phoneme_classes: phoneme classes to accumulate (`phoneme_times.phoneme_inventory`); () for
      none.
    timings: utterance id -> `.timing.json` path (`phoneme_times.find_timings`); enables phoneme
      classes and the alignment quality of `alignment_quality`.
    state_path: where the pass saves its state every `save_every` batches and at the end, and
      from where a rerun resumes; None for no saving.
    save_every: batches between merges of the device states (and saves).
    resume_key: anything else that must match for a saved state to be resumed (checkpoint
      step, split, ...); stored with the state together with a fingerprint of `variables`, the
      model and features configs and the pass's own settings.
    mesh: a 1-D device mesh (default: all local devices).
    progress: show a progress bar.
  """
  if save_every < 1:
    raise ValueError(f'save_every must be >= 1, got {save_every}.')
  mesh = mesh or parallel.make_mesh(jax.local_devices())
  timings = dict(timings or {})
  methods, layers = settings.methods, tuple(int(l) for l in settings.layers)
  step = make_pass_step(ml_collections.FrozenConfigDict(config), mesh, settings)
  # What made the state: the weights, the network and features, and every setting of the pass.
  made_by = json.dumps(dict(resume_key or {}, methods=methods, fill=settings.fill,
                            layers=layers, layer_alignments=settings.profiled_alignments,
                            **({'concept_layers': settings.concept_layers,
                                'references': settings.references}
                               if settings.concept_layers else {}),
                            **({'conditional_layer': settings.conditional_layer,
                                'conditional_channels': settings.conditional_channels}
                               if settings.conditional_channels else {}),
                            phoneme_classes=list(phoneme_classes), save_every=save_every,
                            timed=bool(timings), weights=fingerprint(variables),
                            model=config.model.to_dict(), features=config.features.to_dict()),
                       sort_keys=True, default=str)
  saved = _load(state_path, made_by) if state_path else None
  if saved is None:
    state = navai.empty_pass_state(len(methods), len(phoneme_classes),
                                   config.features.num_mels, model.layer_specs(config.model),
                                   layers, len(settings.profiled_alignments),
                                   settings.concept_layers, settings.references,
                                   settings.conditional_classes)
    quality = alignment_quality.empty_tally(len(methods)) if timings else None
    done = {'batches': 0, 'utterances': 0, 'timed_utterances': 0}
  else:
    state, quality, done = saved
    logging.info('Resuming the NAvAI pass after %d batches from %s.', done['batches'],
                 state_path)
  state_P = spread_devices(jax.tree.map(jnp.asarray, state), mesh)
  variables = parallel.replicate(variables, mesh)
  specs = model.layer_specs(config.model)

  def merge_and_save():
    nonlocal state_P
    merged = reduce_devices(state_P, mesh)
    state_P = spread_devices(merged, mesh)
    if state_path:
      _save(state_path, merged, quality, done, made_by)
    return merged

  merged = None
  first = done['batches']
  todo = (enumerate(batches(first), start=first) if callable(batches)
          else itertools.islice(enumerate(batches), first, None))
  for i, batch in tqdm.tqdm(todo, desc='NAvAI', unit='batch', initial=first,
                            disable=not progress):
    arrays, row_timings = _device_arrays(batch, mesh, timings, phoneme_classes, config)
    state_P, tokens_BxU, positions_BxUxM = step(variables, state_P, *arrays)
    real = np.asarray(batch['weights']) > 0
    done['utterances'] += int(real.sum())
    if quality is not None:
      tokens_BxU, positions_BxUxM = np.asarray(tokens_BxU), np.asarray(positions_BxUxM)
      frames_B = features.num_frames(np.asarray(batch['audio_lengths']),
                                     config.features.window, config.features.hop)
      for r, times in enumerate(row_timings):
        if times is None:
          continue
        length = int(model.output_length(specs, int(frames_B[r])))
        alignment_quality.add_to_tally(quality, alignment_quality.score_utterance(
            tokens_BxU[r, :length], positions_BxUxM[r, :length], str(batch['text'][r]),
            times, config))
        done['timed_utterances'] += 1
    done['batches'] = i + 1
    merged = None
    if done['batches'] % save_every == 0:
      merged = merge_and_save()
  if merged is None:
    merged = merge_and_save()
  merged = jax.tree.map(np.asarray, merged)
  if jax.process_count() > 1:
    merged, quality, done = merge_processes(merged, quality, done)
  return PassResult(merged.letters, merged.phonemes, quality, done['batches'],
                    done['utterances'], done['timed_utterances'], merged.layer_letters,
                    merged.layer_phonemes, merged.zero_maps, merged.concept_letters,
                    merged.concept_phonemes, merged.references, merged.channel_letters)


def merge_processes(state: PassState, quality: Optional[dict[str, np.ndarray]],
                    done: dict[str, int]) -> tuple[PassState, Optional[dict[str, np.ndarray]],
                                                   dict[str, int]]:
  """The passes of all processes (hosts) as one: every process's state gathered
  (`process_allgather`) and merged with Chan's formula in process order; the quality tallies
  and counts added. Every process gets the same result."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  tree = {'state': state, 'quality': quality or {},
          'done': {k: np.int64(v) for k, v in done.items()}}
  gathered = multihost_utils.process_allgather(tree)  # a leading process axis on every leaf
  parts = [jax.tree.map(lambda a, p=p: np.asarray(a[p]), gathered['state'])
           for p in range(jax.process_count())]
  merged = jax.tree.map(np.asarray, functools.reduce(navai.combine_states, parts))
  total = {k: np.asarray(v).sum(0) for k, v in gathered['quality'].items()} or None
  return merged, total if quality is not None else None, {
      k: int(np.asarray(v).sum()) for k, v in gathered['done'].items()}
