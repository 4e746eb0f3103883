"""Training Wav2Letter with CTC: train state, loss, a data-parallel jitted step and the loop.

`train` resumes from the workdir's latest checkpoint by itself: the state comes from the
checkpoint, the data iterator restarts at that step, and all randomness of step s (dropout,
augmentation) comes from `fold_in(key(config.seed), s)`. A run that is killed and rerun
therefore ends with the parameters of an uninterrupted run.

The loss is `ctc.batch_loss`: CTC per label token over the real rows of a batch. The loop is a
`Trainer`: one training step after another (`do_step`), and after each what falls due (`book`:
log, evaluate, save); the run's log is `run_log`.
"""

import functools
import itertools
import math
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
from navai_jax.recognizer import vocab
from navai_jax.speech import other_languages
from navai_jax.speech import phoneme_times
from navai_jax.training import parallel
from navai_jax.training import run_log
from navai_jax.core import rules

Array = jax.Array
PyTree = Any
Batch = Mapping[str, np.ndarray]
# `train_batches(start_step, batch_multiple)`: the training batches from step `start_step` on.
TrainBatches = Callable[[int, int], Iterator[Batch]]
# `eval_batches(batch_multiple)`: one pass over the evaluation split.
EvalBatches = Callable[[int], Iterable[Batch]]

METRICS_FILE = run_log.METRICS_FILE
TENSORBOARD_DIR = run_log.TENSORBOARD_DIR
CTC_IMPLEMENTATIONS = ('forward_backward', 'optax')

RULES = {
    '': [('seed', *rules.at_least(0))],
    'train': [
        ('learning_rate', *rules.POSITIVE), ('warmup_steps', *rules.at_least(0)),
        ('weight_decay', *rules.at_least(0)),
        ('grad_clip', lambda v: v >= 0, '>= 0 (0 = no clipping)'),
        ('num_steps', *rules.at_least(1)),
        ('max_minutes', lambda v: v >= 0, '>= 0 (0 = no limit)'),
        ('log_every', *rules.at_least(1)), ('checkpoint_every', *rules.at_least(1)),
        ('eval_every', lambda v: v >= 0, '>= 0 (0 = never)'),
        ('loss', lambda v: v == 'ctc', "'ctc' (the only loss)"),
        ('ctc', *rules.one_of(CTC_IMPLEMENTATIONS)),
        ('ctc_unroll', lambda v: v >= 0, '>= 0 (0 = by platform)'),
        ('init_from', lambda v: v == '' or bool(v.strip()), "a run's folder, or '' for none"),
        ('other_languages_weight', lambda v: v >= 0, '>= 0'),
        ('engine_adversary', lambda v: v >= 0, '>= 0 (0 = none)'),
        ('phoneme_head', lambda v: v >= 0, '>= 0 (0 = none)'),
        ('phoneme_layer', lambda v: v >= 0, '>= 0 (0 = the last hidden layer)'),
        ('phoneme_steps', lambda v: v >= 0, '>= 0 (0 = every step)'),
    ],
}
# The rules of every section that training reads.
RULE_TABLES = (RULES, model.RULES, features.RULES, data.RULES, augment.RULES, evaluate.RULES)


# Other languages' output layers; the engines' adversary; the phoneme head.
HEADS, ADVERSARY, PHONEMES = checkpoints.TRAINING_ONLY_PARAMS
ADVERSARY_WIDTH = 128  # the hidden layer of the engine adversary (`train.engine_adversary`)


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training; orbax saves it as it is."""
  step: Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState

  @property
  def variables(self) -> PyTree:
    """`{'params', 'batch_stats'}` of the model, as `model.apply_inference` takes them (the
    other languages' output layers left out)."""
    return {'params': checkpoints.model_params(self.params), 'batch_stats': self.batch_stats}


def cross_section_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The rules across two sections (`augment.mask_problems`; language heads need the split of
  other languages)."""
  problems = augment.mask_problems(config)
  hidden = len(model.layer_specs(config.model)) - 1
  if config.train.get('phoneme_layer', 0) > hidden:  # (below 0: `RULES`)
    problems.append(f'config.train.phoneme_layer={config.train.phoneme_layer} must be a hidden '
                    f'layer, 1..{hidden}, or 0 for the last one')
  split = config.data.train_split
  if config.train.get('language_heads') and not (
      isinstance(split, str) and other_languages.named_in(split)):
    problems.append(f'config.train.language_heads=True needs the split '
                    f'{other_languages.SPLIT!r} in config.data.train_split (got {split!r}), '
                    f"e.g. 'train+{other_languages.SPLIT}'")
  return problems


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError listing every setting of the sections training reads out of range."""
  rules.raise_problems(rules.problems(config, *RULE_TABLES) + cross_section_problems(config))


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
  """Fresh parameters from `key(config.seed)` and a fresh optimizer state, at step 0.

  With `train.language_heads`, `params['language_heads']` holds one output layer per language
  of `other_languages.LANGUAGES` ('kernel' [L, W, V], 'bias' [L, V]), initialized as the
  model's own output layer is, from a key of their own (the model's weights are those of a
  run without them). With `train.engine_adversary`, `params['engine_adversary']` holds the
  engine adversary (`engine_logits`), initialized so too, from another key of its own; with
  `train.phoneme_head`, `params['phoneme_head']` the phoneme head (`phoneme_logits`), from a
  third.
  """
  key = jax.random.key(config.seed)
  variables = model.init_variables(config, key)
  params = variables['params']
  wide = model.layer_specs(config.model)[-2].features
  if config.train.language_heads:
    num = len(other_languages.LANGUAGES)
    params = {**params, HEADS: {
        'kernel': jax.nn.initializers.variance_scaling(
            2.0, 'fan_in', 'truncated_normal', batch_axis=0)(
                jax.random.fold_in(key, 1), (num, wide, vocab.SIZE)),
        'bias': jnp.zeros((num, vocab.SIZE))}}
  if config.train.get('engine_adversary'):
    params = {**params, ADVERSARY: init_engine_classifier(
        jax.random.fold_in(key, 2), wide, ADVERSARY_WIDTH, len(data.ENGINE_IDS))}
  if config.train.get('phoneme_head'):
    params = {**params, PHONEMES: {
        'kernel': jax.nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')(
            jax.random.fold_in(key, 3),
            (phoneme_layer(config).features, phoneme_times.NUM_TARGETS)),
        'bias': jnp.zeros(phoneme_times.NUM_TARGETS)}}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables['batch_stats'],
                    opt_state=make_optimizer(config.train).init(params))


def language_logits(config: ml_collections.ConfigDict, heads: PyTree,
                    layers: dict[str, dict[str, Array]], logits_BxUxV: Array,
                    language_B: Array) -> Array:
  """Each row's logits from its language's output layer: the model's own (`logits_BxUxV`)
  for language 0, head `language - 1` of `heads` over the last hidden layer's output
  (`layers`, the model's intermediates) for the others."""
  hidden_BxUxW = layers[model.layer_specs(config.model)[-2].name]['act']
  k_B = jnp.maximum(language_B - 1, 0)
  other_BxUxV = (jnp.einsum('buw,bwv->buv', hidden_BxUxW, heads['kernel'][k_B])
                 + heads['bias'][k_B][:, None])
  return jnp.where((language_B > 0)[:, None, None], other_BxUxV, logits_BxUxV)


@jax.custom_vjp
def reverse_gradient(x: Array, scale: Array) -> Array:
  """`x` itself; its gradient comes back multiplied by `-scale` (Ganin & Lempitsky's gradient
  reversal layer), and `scale` gets none."""
  return x


def _reverse_forward(x, scale):
  return x, scale


def _reverse_backward(scale, g):
  return -scale * g, jnp.zeros_like(scale)


reverse_gradient.defvjp(_reverse_forward, _reverse_backward)


def adversary_weight(train_config: ml_collections.ConfigDict, step: Array) -> Array:
  """`train.engine_adversary` ramped up from 0 as Ganin et al. (2016) do:
  `weight * (2 / (1 + exp(-10 p)) - 1)` at `p = step / num_steps` (0.46 of it at p = 0.1,
  0.90 at 0.3), so the adversary starts once the layers below have something to read."""
  p = jnp.asarray(step, jnp.float32) / train_config.num_steps
  return train_config.engine_adversary * (2.0 / (1.0 + jnp.exp(-10.0 * p)) - 1.0)


def init_engine_classifier(key: Array, features: int, width: int, classes: int) -> PyTree:
  """The parameters `engine_logits` reads: a ReLU layer of `width` over `features` channels,
  then `classes` outputs; kernels as the model's layers are initialized, biases 0."""
  hidden_key, out_key = jax.random.split(key)
  init = jax.nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
  return {'hidden': {'kernel': init(hidden_key, (features, width)), 'bias': jnp.zeros(width)},
          'out': {'kernel': init(out_key, (width, classes)), 'bias': jnp.zeros(classes)}}


def engine_logits(adversary: PyTree, hidden_BxUxW: Array) -> Array:
  """The engine adversary's logits [B, U, len(data.ENGINE_IDS)] of each frame of the last
  hidden layer: a ReLU layer of ADVERSARY_WIDTH, then a linear one."""
  h = jax.nn.relu(hidden_BxUxW @ adversary['hidden']['kernel'] + adversary['hidden']['bias'])
  return h @ adversary['out']['kernel'] + adversary['out']['bias']


def frame_cross_entropy(logits_BxUxK: Array, targets_BxU: Array, keep_BxU: Array,
                        output_lengths_B: Array) -> Array:
  """Cross-entropy of `logits_BxUxK` against class `targets_BxU`, averaged over the positions
  before each row's output length where `keep_BxU`; 0 where there are none."""
  counts_BxU = ((jnp.arange(logits_BxUxK.shape[1]) < output_lengths_B[:, None])
                & keep_BxU).astype(jnp.float32)
  log_p = jax.nn.log_softmax(logits_BxUxK)
  picked_BxU = jnp.take_along_axis(log_p, jnp.maximum(targets_BxU, 0)[..., None],
                                   axis=-1)[..., 0]
  return -jnp.sum(picked_BxU * counts_BxU) / jnp.maximum(jnp.sum(counts_BxU), 1.0)


def engine_loss(logits_BxUxE: Array, engine_B: Array, weights_B: Array,
                output_lengths_B: Array) -> Array:
  """Cross-entropy of the adversary's logits against each row's engine (`engine - 1`), averaged
  over the real output frames of the rows whose engine is named (`engine > 0`, weight > 0);
  0 for a batch without any."""
  targets_BxU = jnp.broadcast_to((engine_B - 1)[:, None], logits_BxUxE.shape[:2])
  return frame_cross_entropy(logits_BxUxE, targets_BxU,
                             ((engine_B > 0) & (weights_B > 0))[:, None], output_lengths_B)


def phoneme_weight(train_config: ml_collections.ConfigDict, step: Array) -> Array:
  """The phoneme loss's weight at `step`: `train.phoneme_head` for the first
  `train.phoneme_steps` steps (all of them for 0), 0 after."""
  steps = train_config.get('phoneme_steps', 0)
  return jnp.where((steps == 0) | (step < steps), train_config.phoneme_head, 0.0)


def phoneme_layer(config: ml_collections.ConfigDict) -> model.LayerSpec:
  """The layer the phoneme head reads: `train.phoneme_layer`, or the last hidden one for 0."""
  specs = model.layer_specs(config.model)
  return specs[(config.train.get('phoneme_layer', 0) or len(specs) - 1) - 1]


def position_targets(config: ml_collections.ConfigDict, targets_BxT: Array,
                     read_lengths_B: Array, lengths_B: Array, num_positions: int) -> Array:
  """The phoneme target [B, num_positions] of each position of `phoneme_layer`'s output: that
  of the feature frame at the centre of its receptive window (`model.window_start`), taken from
  the frames of the audio as read (`targets_BxT`, `read_lengths_B` samples) where speed
  perturbation made it `lengths_B` samples long, so the time is scaled back by their ratio."""
  c = config.features
  specs = model.layer_specs(config.model)[:phoneme_layer(config).number]
  centre_U = (model.window_start(specs, jnp.arange(num_positions))
              + (model.receptive_field(specs) - 1) // 2)
  ratio_B = read_lengths_B.astype(jnp.float32) / lengths_B.astype(jnp.float32)
  centre_BxU = (centre_U * c.hop + c.window / 2) * ratio_B[:, None]  # samples of the audio read
  frame_BxU = jnp.clip(jnp.round((centre_BxU - c.window / 2) / c.hop).astype(jnp.int32),
                       0, targets_BxT.shape[1] - 1)
  return jnp.take_along_axis(targets_BxT, frame_BxU, axis=1)


def phoneme_logits(head: PyTree, act_BxUxC: Array) -> Array:
  """The phoneme head's logits [B, U, phoneme_times.NUM_TARGETS]: a linear layer."""
  return act_BxUxC @ head['kernel'] + head['bias']


def phoneme_loss(logits_BxUxP: Array, targets_BxU: Array, weights_B: Array,
                 output_lengths_B: Array) -> Array:
  """Cross-entropy of the phoneme head against the targets, averaged over the real positions
  (of rows of weight > 0) that have one (>= 0); 0 for a batch without any."""
  return frame_cross_entropy(logits_BxUxP, targets_BxU,
                             (weights_B > 0)[:, None] & (targets_BxU >= 0), output_lengths_B)


def step_key(config: ml_collections.ConfigDict, step: Array) -> Array:
  """The randomness of training step `step`, independent of where a run was restarted."""
  return jax.random.fold_in(jax.random.key(config.seed), step)


def train_step(config: ml_collections.ConfigDict, state: TrainState,
               batch: Mapping[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer step on a batch of audio (features are computed here, on the device).

  Batch norm runs in training mode with a mask, so padded frames never enter its statistics,
  and every layer zeroes its padded positions (`model.Wav2Letter`). Rows of other languages
  (`batch['language'] > 0`) are read through their own output layers with
  `train.language_heads` and weighted by `train.other_languages_weight` in the loss. With
  `train.engine_adversary`, the adversary's loss (`engine_loss` of `engine_logits`) is added:
  its own parameters descend it, and the model's, through `reverse_gradient` at the last
  hidden layer, ascend it by `adversary_weight`. With `train.phoneme_head`, the phoneme head's
  cross-entropy (`phoneme_loss` of `phoneme_logits` at `position_targets`) is added, times
  `phoneme_weight`.
  Returns the new state and `{'loss', 'grad_norm', 'learning_rate'}` of this step (the CTC
  loss), with `'engine_loss'` where there is an adversary and `'phoneme_loss'` where there is a
  phoneme head.
  """
  dropout_key, augment_key = jax.random.split(step_key(config, state.step))
  audio_BxA, lengths_B = batch['audio'], batch['audio_lengths']
  read_lengths_B = lengths_B
  if config.augment.enabled:
    audio_BxA, lengths_B = augment.waveform(audio_BxA, lengths_B, augment_key, config.augment,
                                            config.features.sample_rate, config.seed)
  x_BxTxF, frames_B = features.log_mel(audio_BxA, lengths_B, config)
  if config.augment.enabled:
    x_BxTxF = augment.augment(x_BxTxF, frames_B, augment_key, config.augment,
                              config.features.sample_rate)
  mask_BxT = model.padding_mask(frames_B, x_BxTxF.shape[1])
  output_lengths_B = model.output_length(model.layer_specs(config.model), frames_B)

  weights_B = batch['weights']
  if config.train.other_languages_weight != 1.0:
    weights_B = weights_B * jnp.where(batch['language'] > 0,
                                      config.train.other_languages_weight, 1.0)

  def loss_fn(params):
    (logits_BxUxV, layers), updates = model.Wav2Letter(config.model).apply(
        {'params': checkpoints.model_params(params), 'batch_stats': state.batch_stats},
        x_BxTxF, train=True, mask_BxT=mask_BxT, mutable=['batch_stats'],
        rngs={'dropout': dropout_key})
    if HEADS in params:
      logits_BxUxV = language_logits(config, params[HEADS], layers, logits_BxUxV,
                                     batch['language'])
    loss = ctc.batch_loss(logits_BxUxV,
                          ctc.logit_paddings(output_lengths_B, logits_BxUxV.shape[1]),
                          batch['labels'], batch['label_paddings'], weights_B,
                          config.train.ctc, config.train.ctc_unroll)
    aux = {'loss': loss}
    if ADVERSARY in params:
      hidden_BxUxW = layers[model.layer_specs(config.model)[-2].name]['act']
      reversed_BxUxW = reverse_gradient(hidden_BxUxW,
                                        adversary_weight(config.train, state.step))
      aux['engine_loss'] = engine_loss(engine_logits(params[ADVERSARY], reversed_BxUxW),
                                       batch['engine'], batch['weights'], output_lengths_B)
      loss = loss + aux['engine_loss']
    if PHONEMES in params:
      act_BxUxC = layers[phoneme_layer(config).name]['act']
      aux['phoneme_loss'] = phoneme_loss(
          phoneme_logits(params[PHONEMES], act_BxUxC),
          position_targets(config, batch['phonemes'], read_lengths_B, lengths_B,
                           act_BxUxC.shape[1]),
          batch['weights'], output_lengths_B)
      loss = loss + phoneme_weight(config.train, state.step) * aux['phoneme_loss']
    return loss, (aux, updates['batch_stats'])

  (_, (aux, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = make_optimizer(config.train).update(grads, state.opt_state, state.params)
  new_state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state)
  return new_state, {**aux, 'grad_norm': optax.tree.norm(grads),
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


def start_from(state: TrainState, run: str | Path, mesh: Mesh) -> TrainState:
  """`state` (step 0, fresh optimizer) with the latest weights and batch-norm statistics of the
  finished run in folder `run` (`config.train.init_from`), replicated on `mesh`. Its model
  only: output layers of other languages (`train.language_heads`) are `state`'s own, fresh.

  Raises:
    FileNotFoundError: `run` holds no config.json or no finished checkpoint.
    ValueError: its model's shapes are not those of `config`'s model.
  """
  _, variables, step = checkpoints.load_for_inference(run)
  theirs, ours = checkpoints.tree_shapes(variables), checkpoints.tree_shapes(state.variables)
  if theirs != ours:
    differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    raise ValueError(f'config.train.init_from={str(run)!r}: its model (step {step}) has other '
                     f'shapes than this config\'s at {", ".join(differ[:3])}'
                     f'{" ..." if len(differ) > 3 else ""}.')
  variables = parallel.replicate(variables, mesh)
  return state.replace(params={**state.params, **variables['params']},
                       batch_stats=variables['batch_stats'])


class Trainer:
  """One training run in progress: its state, what is dispatched and not yet read back, the
  window of steps since the last logged one, and what falls due after each step (log,
  evaluate, save). nanodo's `Trainer` in the shape of this project's step."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path, mesh: Mesh,
               eval_batches: EvalBatches):
    self.config, self.t, self.mesh, self.eval_batches = config, config.train, mesh, eval_batches
    self.is_main = jax.process_index() == 0
    frozen = ml_collections.FrozenConfigDict(config)
    files.check_writable(workdir)
    self.mngr = checkpoints.manager(workdir)
    replicated = parallel.replicated(mesh)
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
        jax.eval_shape(functools.partial(init_state, frozen)))
    start, state, meta = checkpoints.restore_latest_good(self.mngr, abstract, config)
    if start is not None:
      checkpoints.check_resume(workdir, config)
    if self.is_main:
      checkpoints.write_config(workdir, config)
    # The window since the last logged step: its losses, audio seconds and seconds; a resumed
    # run carries it over, so the next logged loss averages the same steps.
    self.losses = list(meta.get('window_losses', []))
    self.audio_seconds = meta.get('window_audio_seconds', 0.0)
    self.window_seconds = meta.get('window_seconds', 0.0)
    self.elapsed = meta.get('elapsed_seconds', 0.0)  # training time, evaluation excluded
    if start is None:
      state = jit_init_state(frozen, mesh)()
      if self.t.get('init_from'):
        state = start_from(state, self.t.init_from, mesh)
        if self.is_main:
          tqdm.tqdm.write(f'Starting {workdir} from the weights of {self.t.init_from}.')
    elif self.is_main:
      tqdm.tqdm.write(f'Resuming {workdir} from step {start} '
                      f'({self.elapsed / 60:.1f} min of training).')
    self.state = state
    self.step = int(state.step)
    self.booked = self.step  # the last step whose logging, evaluation and saving are done
    self.log = run_log.RunLog(workdir, self.step, self.t, enabled=self.is_main)
    self.step_fn = jit_train_step(frozen, mesh)
    # Metrics of dispatched steps not yet read back. A step's loss is read once the next step
    # is queued, so the devices always have work while the host waits; all are read (and
    # checked) before anything is logged, evaluated or saved.
    self.pending: list[tuple[int, Any]] = []
    self.last_metrics: dict[str, float] = {}
    self.bar = tqdm.tqdm(total=self.t.num_steps, initial=self.step, disable=not self.is_main,
                         unit='step', dynamic_ncols=True)
    self.tick = time.perf_counter()

  def out_of_time(self) -> bool:
    return 0 < self.t.max_minutes * 60 <= self.elapsed

  def done(self) -> bool:
    return self.step >= self.t.num_steps or self.out_of_time()

  def do_step(self, batch: Batch, device_batch: PyTree) -> None:
    """Dispatches one training step, counts its time and audio, and books it."""
    self.state, step_metrics = self.step_fn(self.state, device_batch)
    self.step += 1
    self.pending.append((self.step, step_metrics))
    self.read_back(keep=1)
    now = time.perf_counter()
    seconds, self.tick = now - self.tick, now
    self.elapsed += seconds
    self.window_seconds += seconds
    real = np.asarray(batch['weights']) > 0
    self.audio_seconds += (np.sum(batch['audio_lengths'][real])
                           / self.config.features.sample_rate)
    self.bar.update(1)
    self.book()
    checkpoints.check_saved(self.mngr)

  def read_back(self, keep: int) -> None:
    """Reads the metrics of all but `keep` pending steps; a non-finite loss stops the run."""
    while len(self.pending) > keep:
      number, metrics = self.pending.pop(0)
      self.last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not math.isfinite(self.last_metrics['loss']):
        self.mngr.wait_until_finished()
        raise FloatingPointError(
            f'Loss is {self.last_metrics["loss"]} at step {number}; stopped without saving it '
            f'(latest checkpoint: step {self.mngr.latest_step()}). Try a smaller '
            'config.train.learning_rate.')
      self.losses.append(self.last_metrics['loss'])

  def book(self) -> None:
    """What falls due after the current step: log, evaluate, save."""
    t, step = self.t, self.step
    last = step == t.num_steps or self.out_of_time()
    log_now = step % t.log_every == 0 or last
    evaluate_now = t.eval_every and (step % t.eval_every == 0 or last)
    save_now = step % t.checkpoint_every == 0 or last
    if log_now or evaluate_now or save_now:
      self.read_back(keep=0)
    if log_now:
      record = {'step': step, 'loss': float(np.mean(self.losses)),
                'learning_rate': self.last_metrics['learning_rate'],
                'grad_norm': self.last_metrics['grad_norm'],
                **{k: self.last_metrics[k] for k in ('engine_loss', 'phoneme_loss')
                   if k in self.last_metrics},
                'audio_seconds_per_second': self.audio_seconds / max(self.window_seconds, 1e-9),
                'elapsed_seconds': self.elapsed}
      self.log.write(record)
      self.bar.set_postfix(loss=f'{record["loss"]:.3f}',
                           audio_s_per_s=f'{record["audio_seconds_per_second"]:.0f}')
      self.losses, self.audio_seconds, self.window_seconds = [], 0.0, 0.0
    if evaluate_now:
      self.evaluate()
      self.tick = time.perf_counter()  # evaluation is not training time
    if save_now:
      self.save()
    self.booked = step

  def evaluate(self) -> None:
    result = evaluate.evaluate(self.config, self.state.variables,
                               self.eval_batches(self.mesh.size), mesh=self.mesh, num_examples=0)
    del result['examples']
    split = self.config.data.eval_split
    self.log.write({'step': self.step, 'split': split, **result,
                    'elapsed_seconds': self.elapsed})
    self.bar.write(f'step {self.step}: {split} LER {result["ler"]:.4f} '
                   f'WER {result["wer"]:.4f} ({result["num_utterances"]} utterances)')

  def save(self) -> None:
    checkpoints.save(self.mngr, self.step, self.state, {
        'elapsed_seconds': self.elapsed, 'window_losses': list(self.losses),
        'window_audio_seconds': self.audio_seconds, 'window_seconds': self.window_seconds})

  def save_interrupted(self) -> None:
    """After Ctrl-C: the last step's booking and a checkpoint, where the state is that of the
    last counted step (the interrupt can fall between a step and its count)."""
    if int(self.state.step) == self.step:
      if self.booked != self.step:
        self.book()
      if self.mngr.latest_step() != self.step:
        self.read_back(keep=0)
        self.save()
    self.mngr.wait_until_finished()

  def close(self) -> None:
    self.bar.close()
    self.log.close()
    self.mngr.wait_until_finished()
    self.mngr.close()


def _train(config: ml_collections.ConfigDict, workdir: Path,
           train_batches: Optional[TrainBatches], eval_batches: Optional[EvalBatches],
           mesh: Optional[Mesh]) -> TrainState:
  """`train` inside its workdir's lock."""
  default_train, default_eval = corpus_batches(config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  trainer = Trainer(config, Path(workdir), mesh, eval_batches or default_eval)
  # A background thread makes each batch and copies it to the devices while they compute.
  prefetched = parallel.prefetch((train_batches or default_train)(trainer.step, mesh.size), mesh)
  try:
    # The first batch loads the corpus, before the clock starts.
    batches = itertools.chain([next(prefetched, None)], prefetched)
    trainer.tick = time.perf_counter()
    while not trainer.done():
      item = next(batches, None)
      if item is None:
        raise ValueError(f'The training batches ran out after step {trainer.step}; they must '
                         'be endless.')
      trainer.do_step(*item)
    if trainer.out_of_time():
      trainer.bar.write(f'Training time {trainer.elapsed / 60:.1f} min reached '
                        f'config.train.max_minutes={config.train.max_minutes} at step '
                        f'{trainer.step}.')
  except KeyboardInterrupt:
    trainer.save_interrupted()
    raise KeyboardInterrupt(f'Interrupted at step {trainer.step}; the latest checkpoint is step '
                            f'{trainer.mngr.latest_step()}. Run the same command again to '
                            'resume.') from None
  finally:
    prefetched.close()
    trainer.close()
  return trainer.state
