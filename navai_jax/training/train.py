"""Training Wav2Letter with CTC: train state, loss, a data-parallel jitted step and the loop.

`train` resumes from the workdir's latest checkpoint by itself: the state comes from the
checkpoint, the data iterator restarts at that step, and all randomness of step s (dropout,
augmentation) comes from `fold_in(key(config.seed), s)`. A run that is killed and rerun
therefore ends with the parameters of an uninterrupted run.

The loss is CTC per utterance, summed over the real rows of the batch (weight > 0) and
divided by their total number of label tokens: a per-token loss, so that the gradient scale
does not depend on how many or how long the utterances of a bucket are.
"""

import functools
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np
import optax
import tqdm

from navai_jax.training import augment
from navai_jax.training import checkpoints
from navai_jax.recognizer import ctc
from navai_jax.speech import data
from navai_jax.training import evaluate
from navai_jax.recognizer import features
from navai_jax.core import files
from navai_jax.recognizer import model
from navai_jax.training import parallel
from navai_jax.core import rules
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any
Batch = Mapping[str, np.ndarray]
# `train_batches(start_step, batch_multiple)`: the training batches from step `start_step` on.
TrainBatches = Callable[[int, int], Iterator[Batch]]
# `eval_batches(batch_multiple)`: one pass over the evaluation split.
EvalBatches = Callable[[int], Iterable[Batch]]

METRICS_FILE = 'metrics.jsonl'
CTC_IMPLEMENTATIONS = rules.CTC_IMPLEMENTATIONS


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training; orbax saves it as it is."""
  step: Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState

  @property
  def variables(self) -> PyTree:
    """`{'params', 'batch_stats'}`, as `model.apply_inference` takes them."""
    return {'params': self.params, 'batch_stats': self.batch_stats}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError listing every setting out of range (`rules.check`)."""
  rules.check(config)


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to `learning_rate`, then cosine decay to 5% at `num_steps`."""
  t = train_config
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=t.learning_rate, warmup_steps=t.warmup_steps,
      decay_steps=max(t.num_steps, t.warmup_steps + 1), end_value=0.05 * t.learning_rate)


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Gradient clipping by global norm, then AdamW; weight decay on convolution kernels only.

  The state has the same structure for every setting, so a run can be resumed with, say,
  clipping switched off.
  """
  t = train_config
  decay_kernels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: jax.tree_util.keystr(path).endswith("['kernel']"), params)
  clip = optax.clip_by_global_norm(t.grad_clip) if t.grad_clip else optax.identity()
  return optax.chain(clip, optax.adamw(learning_rate_schedule(t), weight_decay=t.weight_decay,
                                       mask=decay_kernels))


def init_state(config: ml_collections.ConfigDict) -> TrainState:
  """Fresh parameters from `key(config.seed)` and a fresh optimizer state, at step 0."""
  variables = model.init_variables(config, jax.random.key(config.seed))
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                    batch_stats=variables['batch_stats'],
                    opt_state=make_optimizer(config.train).init(variables['params']))


def step_key(config: ml_collections.ConfigDict, step: Array) -> Array:
  """The randomness of training step `step`, independent of where a run was restarted."""
  return jax.random.fold_in(jax.random.key(config.seed), step)


def logit_paddings(output_lengths_B: Array, num_positions: int) -> Array:
  """`[B, U]` 1.0 at output positions beyond each utterance's output length."""
  return (jnp.arange(num_positions)[None] >= output_lengths_B[:, None]).astype(jnp.float32)


def ctc_loss(logits_BxUxV: Array, logit_paddings_BxU: Array, labels_BxL: Array,
             label_paddings_BxL: Array, weights_B: Array, implementation: str = 'forward_backward',
             unroll: int = 0) -> Array:
  """Weighted CTC loss per label token (see the module docstring).

  Args:
    logits_BxUxV: unnormalized scores; the CTC applies the log-softmax.
    logit_paddings_BxU: 1.0 at output positions beyond an utterance.
    labels_BxL: token ids (`vocab.encode`), padded.
    label_paddings_BxL: 1.0 where `labels_BxL` is padding.
    weights_B: 1 for real utterances, 0 for filler rows.
    implementation: 'forward_backward' (`navai_jax.recognizer.ctc.ctc_loss`) or 'optax'
      (`optax.ctc_loss`); the same loss and gradient (`config.train.ctc`).
    unroll: `navai_jax.recognizer.ctc.ctc_loss`'s positions per loop iteration (`config.train.ctc_unroll`);
      0 = `ctc.default_unroll()`.
  Returns:
    `sum_b w_b ctc_b / sum_b w_b |labels_b|`.
  """
  if implementation == 'optax':
    per_utterance_B = optax.ctc_loss(logits_BxUxV, logit_paddings_BxU, labels_BxL,
                                     label_paddings_BxL, blank_id=vocab.BLANK)
  else:
    per_utterance_B = ctc.ctc_loss(logits_BxUxV, logit_paddings_BxU, labels_BxL,
                                   label_paddings_BxL, blank_id=vocab.BLANK,
                                   unroll=unroll or None)
  tokens_B = jnp.sum(1.0 - label_paddings_BxL, axis=1)
  return jnp.sum(weights_B * per_utterance_B) / jnp.maximum(jnp.sum(weights_B * tokens_B), 1.0)


def train_step(config: ml_collections.ConfigDict, state: TrainState,
               batch: Mapping[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer step on a batch of audio (features are computed here, on the device).

  Batch norm runs in training mode with a mask, so padded frames never enter its statistics,
  and every layer zeroes its padded positions (`model.Wav2Letter`).
  Returns the new state and `{'loss', 'grad_norm', 'learning_rate'}` of this step.
  """
  dropout_key, augment_key = jax.random.split(step_key(config, state.step))
  x_BxTxF, frames_B = features.log_mel(batch['audio'], batch['audio_lengths'], config)
  if config.augment.enabled:
    x_BxTxF = augment.augment(x_BxTxF, frames_B, augment_key, config.augment,
                              config.features.sample_rate)
  mask_BxT = model.padding_mask(frames_B, x_BxTxF.shape[1])
  output_lengths_B = model.output_length(model.layer_specs(config.model), frames_B)

  def loss_fn(params):
    (logits_BxUxV, _), updates = model.Wav2Letter(config.model).apply(
        {'params': params, 'batch_stats': state.batch_stats}, x_BxTxF, train=True,
        mask_BxT=mask_BxT, mutable=['batch_stats'], rngs={'dropout': dropout_key})
    loss = ctc_loss(logits_BxUxV, logit_paddings(output_lengths_B, logits_BxUxV.shape[1]),
                    batch['labels'], batch['label_paddings'], batch['weights'],
                    config.train.ctc, config.train.ctc_unroll)
    return loss, updates['batch_stats']

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = make_optimizer(config.train).update(grads, state.opt_state, state.params)
  new_state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state)
  return new_state, {'loss': loss, 'grad_norm': optax.tree.norm(grads),
                     'learning_rate': learning_rate_schedule(config.train)(state.step)}


@functools.lru_cache(maxsize=8)
def jit_init_state(config: ml_collections.FrozenConfigDict, mesh: Mesh):
  """`init_state` jitted to put the state replicated on `mesh`; cached per (config, mesh)."""
  return jax.jit(functools.partial(init_state, config), out_shardings=parallel.replicated(mesh))


@functools.lru_cache(maxsize=8)
def jit_train_step(config: ml_collections.FrozenConfigDict, mesh: Mesh):
  """`train_step` jitted for `mesh`: state replicated, batch split on its first axis.

  The input state is donated. Cached per (config, mesh), so runs in one process share the
  compiled step.
  """
  return jax.jit(functools.partial(train_step, config),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh), donate_argnums=0)


def corpus_batches(config: ml_collections.ConfigDict) -> tuple[TrainBatches, EvalBatches]:
  """Training and evaluation batches of `config.data` through `data.batches`; each process
  reads only its own rows of every training batch, and the whole of every evaluation batch."""

  def train_batches(start_step: int, batch_multiple: int) -> Iterator[Batch]:
    return data.batches(config, config.data.train_split, train=True, seed=config.seed,
                        start_step=start_step, batch_multiple=batch_multiple,
                        process_index=jax.process_index(), process_count=jax.process_count())

  def eval_batches(batch_multiple: int) -> Iterable[Batch]:
    return data.batches(config, config.data.eval_split, train=False,
                        batch_multiple=batch_multiple, max_utterances=config.eval.max_utterances)

  return train_batches, eval_batches


def _keep_metrics_until(path: Path, step: int, train_config: ml_collections.ConfigDict) -> None:
  """Keeps the lines that an uninterrupted run has written by the end of `step`.

  Drops what a run wrote after its last checkpoint (`step`) before it died, and the lines that
  an early stop (`max_minutes`) wrote at `step` off the regular `log_every` / `eval_every`
  steps: a resumed run writes the regular lines itself, so its file equals an uninterrupted
  run's.
  """
  if not path.is_file():
    return
  t = train_config
  kept = []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # The last line of a run killed while writing it.
      continue
    at = record['step']
    every = t.eval_every if 'ler' in record else t.log_every
    early = at == step < t.num_steps and (not every or at % every)
    if at <= step and not early:
      kept.append(line + '\n')
  files.write_text(path, ''.join(kept))


TENSORBOARD_DIR = 'tensorboard'


def tensorboard_writer(workdir: Path):
  """flax's TensorBoard writer on `WORKDIR/tensorboard`; None (said once) where TensorFlow,
  which writes the event files, cannot be imported."""
  # TensorFlow only writes the event files here; its oneDNN kernels are never used, and their
  # start-up notice is the only line it would print.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  try:
    from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    tqdm.tqdm.write(f'No TensorBoard event files ({e}); metrics.jsonl has every number.')
    return None
  return tensorboard.SummaryWriter(str(workdir / TENSORBOARD_DIR), auto_flush=False)


def write_scalars(writer, record: dict[str, Any]) -> None:
  """One metrics.jsonl record as TensorBoard scalars: `train/NAME`, or `SPLIT/NAME` for an
  evaluation."""
  group = record.get('split', 'train')
  for name, value in record.items():
    if name not in ('step', 'split') and isinstance(value, (int, float)):
      writer.scalar(f'{group}/{name}', value, record['step'])
  writer.flush()


def train(config: ml_collections.ConfigDict, workdir: str | Path, *,
          train_batches: Optional[TrainBatches] = None,
          eval_batches: Optional[EvalBatches] = None,
          mesh: Optional[Mesh] = None) -> TrainState:
  """Trains (or resumes training) until `config.train.num_steps` or `max_minutes`.

  Writes into `workdir`: config.json, checkpoints/ (every `checkpoint_every` steps and at the
  end), and metrics.jsonl with one JSON line per logged step (step, loss, learning_rate,
  grad_norm, audio_seconds_per_second, elapsed_seconds) and per evaluation (step, split,
  ler, wer, num_utterances, elapsed_seconds). `elapsed_seconds` is training time summed over
  restarts, evaluation excluded. With `config.train.tensorboard` the same numbers go to
  TensorBoard event files in WORKDIR/tensorboard (`write_scalars`).

  Args:
    config: the experiment config.
    workdir: where the run lives; an existing checkpoint there is resumed.
    train_batches: `(start_step, batch_multiple) -> iterator` of training batches; default
      the corpus of `config.data` (tests pass made-up batches).
    eval_batches: `(batch_multiple) -> iterable` of evaluation batches; default the corpus's
      `config.data.eval_split`. Used every `config.train.eval_every` steps when that is > 0.
    mesh: devices to train on; default all devices.
  Returns:
    The final train state (replicated over the mesh).
  Raises:
    ValueError: a config setting out of range, or a checkpoint that does not fit the config.
    files.FolderInUse: another run is training into `workdir` (its lock, `files.locked`).
    FloatingPointError: the loss became NaN or infinite (nothing of that step is saved).
  """
  check_config(config)
  if jax.process_index():  # One lock per run: the first process holds it for all hosts.
    return _train(config, Path(workdir), train_batches, eval_batches, mesh)
  with files.locked(workdir, f'training ({config.get("preset", "?")})'):
    return _train(config, Path(workdir), train_batches, eval_batches, mesh)


def _train(config: ml_collections.ConfigDict, workdir: Path,
           train_batches: Optional[TrainBatches], eval_batches: Optional[EvalBatches],
           mesh: Optional[Mesh]) -> TrainState:
  """`train` inside its workdir's lock."""
  default_train, default_eval = corpus_batches(config)
  train_batches = train_batches or default_train
  eval_batches = eval_batches or default_eval
  t = config.train
  workdir = Path(workdir)
  is_main = jax.process_index() == 0
  mesh = parallel.make_mesh() if mesh is None else mesh
  replicated = parallel.replicated(mesh)
  frozen = ml_collections.FrozenConfigDict(config)

  files.check_writable(workdir)
  mngr = checkpoints.manager(workdir)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          jax.eval_shape(functools.partial(init_state, frozen)))
  start, state, meta = checkpoints.restore_latest_good(mngr, abstract, config)
  if start is not None:
    checkpoints.check_resume(workdir, config)
  if is_main:
    checkpoints.write_config(workdir, config)
  losses, audio_seconds, window_seconds = [], 0.0, 0.0
  if start is None:
    state = jit_init_state(frozen, mesh)()
    elapsed = 0.0
    if is_main:  # Lines of a run that died before its first checkpoint.
      _keep_metrics_until(workdir / METRICS_FILE, 0, t)
  else:
    elapsed = meta['elapsed_seconds']
    # The steps since the last logged one, so the next logged loss averages the same steps.
    losses = list(meta.get('window_losses', []))
    audio_seconds = meta.get('window_audio_seconds', 0.0)
    window_seconds = meta.get('window_seconds', 0.0)
    if is_main:
      tqdm.tqdm.write(f'Resuming {workdir} from step {start} ({elapsed / 60:.1f} min of training).')
      _keep_metrics_until(workdir / METRICS_FILE, start, t)

  board = tensorboard_writer(workdir) if is_main and t.tensorboard else None

  def log(record: dict[str, Any]) -> None:
    if is_main:
      with open(workdir / METRICS_FILE, 'a') as f:
        f.write(json.dumps(record) + '\n')
      if board is not None:
        write_scalars(board, record)

  def run_evaluation(step: int) -> None:
    result = evaluate.evaluate(config, state.variables, eval_batches(mesh.size), mesh=mesh,
                               num_examples=0)
    del result['examples']
    log({'step': step, 'split': config.data.eval_split, **result, 'elapsed_seconds': elapsed})
    bar.write(f'step {step}: {config.data.eval_split} LER {result["ler"]:.4f} '
              f'WER {result["wer"]:.4f} ({result["num_utterances"]} utterances)')

  out_of_time = lambda: 0 < t.max_minutes * 60 <= elapsed
  step = int(state.step)
  step_fn = jit_train_step(frozen, mesh)
  # A background thread makes each batch and copies it to the devices while they compute.
  prefetched = parallel.prefetch(train_batches(step, mesh.size), mesh)
  # The first batch loads the corpus, before the clock starts.
  batches = itertools.chain([next(prefetched, None)], prefetched)
  bar = tqdm.tqdm(total=t.num_steps, initial=step, disable=not is_main, unit='step',
                  dynamic_ncols=True)
  # Metrics of dispatched steps not yet read back. A step's loss is read once the next step is
  # queued, so the devices always have work while the host waits; all are read (and checked)
  # before anything is logged, evaluated or saved.
  pending: list[tuple[int, Any]] = []
  last_metrics: dict[str, float] = {}

  def read_back(keep: int) -> None:
    nonlocal last_metrics
    while len(pending) > keep:
      number, metrics = pending.pop(0)
      last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not math.isfinite(last_metrics['loss']):
        mngr.wait_until_finished()
        raise FloatingPointError(
            f'Loss is {last_metrics["loss"]} at step {number}; stopped without saving it '
            f'(latest checkpoint: step {mngr.latest_step()}). Try a smaller '
            'config.train.learning_rate.')
      losses.append(last_metrics['loss'])

  def save(step: int) -> None:
    checkpoints.save(mngr, step, state, {
        'elapsed_seconds': elapsed, 'window_losses': list(losses),
        'window_audio_seconds': audio_seconds, 'window_seconds': window_seconds})

  def book(step: int) -> None:
    """What the loop does after step `step`: log, evaluate, save, as they fall due."""
    nonlocal losses, audio_seconds, window_seconds, tick
    last = step == t.num_steps or out_of_time()
    evaluate_now = t.eval_every and (step % t.eval_every == 0 or last)
    save_now = step % t.checkpoint_every == 0 or last
    if step % t.log_every == 0 or last or evaluate_now or save_now:
      read_back(keep=0)
    if step % t.log_every == 0 or last:
      record = {'step': step, 'loss': float(np.mean(losses)),
                'learning_rate': last_metrics['learning_rate'],
                'grad_norm': last_metrics['grad_norm'],
                'audio_seconds_per_second': audio_seconds / max(window_seconds, 1e-9),
                'elapsed_seconds': elapsed}
      log(record)
      bar.set_postfix(loss=f'{record["loss"]:.3f}',
                      audio_s_per_s=f'{record["audio_seconds_per_second"]:.0f}')
      losses, audio_seconds, window_seconds = [], 0.0, 0.0
    if evaluate_now:
      run_evaluation(step)
      tick = time.perf_counter()
    if save_now:
      save(step)

  booked = step  # the last step whose logging, evaluation and saving are done
  tick = time.perf_counter()
  try:
    while step < t.num_steps and not out_of_time():
      item = next(batches, None)
      if item is None:
        raise ValueError(f'The training batches ran out after step {step}; they must be endless.')
      batch, device_batch = item
      state, step_metrics = step_fn(state, device_batch)
      step += 1
      pending.append((step, step_metrics))
      read_back(keep=1)
      now = time.perf_counter()
      seconds, tick = now - tick, now
      elapsed += seconds
      real = np.asarray(batch['weights']) > 0
      audio_seconds += np.sum(batch['audio_lengths'][real]) / config.features.sample_rate
      window_seconds += seconds
      bar.update(1)
      book(step)
      booked = step
      checkpoints.check_saved(mngr)
    if out_of_time():
      bar.write(f'Training time {elapsed / 60:.1f} min reached config.train.max_minutes='
                f'{t.max_minutes} at step {step}.')
  except KeyboardInterrupt:
    # Ctrl-C: finish the last step's logging and save it, where the state is that of the last
    # counted step (the interrupt can fall between a step and its count); then say how to go on.
    if int(state.step) == step:
      if booked != step:
        book(step)
      if mngr.latest_step() != step:
        read_back(keep=0)
        save(step)
    mngr.wait_until_finished()
    raise KeyboardInterrupt(f'Interrupted at step {step}; the latest checkpoint is step '
                            f'{mngr.latest_step()}. Run the same command again to resume.'
                            ) from None
  finally:
    prefetched.close()
    bar.close()
    if board is not None:
      board.close()
    mngr.wait_until_finished()
    mngr.close()
  return state
