"""Training: augmentation, loss, sharded step == one device, loss falls, kill-and-resume.

Data are made up: each character is a 80 ms sine tone whose pitch names its token, so a tiny
model learns the transcripts within a few dozen steps. Every training test uses `tones.config()`
and batches of one shape, so one compiled step serves them all within a test process.
"""

import functools
import itertools
import json
import pickle
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from navai_jax.configs import default
from navai_jax.recognizer import ctc
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.training import checkpoints
from navai_jax.training import evaluate
from navai_jax.core import files
from navai_jax.training import parallel
from navai_jax.training import train
from navai_jax.recognizer import vocab
from navai_jax.speech import data
from navai_jax.speech import phonemes


ROOT = Path(__file__).resolve().parents[1]


def read_metrics(workdir):
  return [json.loads(line) for line in (Path(workdir) / train.METRICS_FILE).read_text().splitlines()]


def assert_trees_equal(a, b, atol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


@pytest.fixture(scope='module')
def reference_run(tones_run):
  """An uninterrupted run of `tones.config()`: (workdir, final state)."""
  return tones_run


# Loss, schedule and optimizer.


@pytest.mark.parametrize('implementation', train.CTC_IMPLEMENTATIONS)
def test_ctc_loss_is_per_token_and_ignores_filler_rows(implementation):
  key = jax.random.key(0)
  logits = jax.random.normal(key, (3, 20, vocab.SIZE))
  paddings = ctc.logit_paddings(jnp.array([20, 15, 20]), 20)
  labels = jnp.array([[3, 4, 5], [6, 7, 0], [8, 0, 0]])
  label_paddings = jnp.array([[0., 0, 0], [0, 0, 1], [0, 1, 1]])
  per = optax.ctc_loss(logits, paddings, labels, label_paddings, blank_id=0)
  loss = ctc.batch_loss(logits, paddings, labels, label_paddings, jnp.array([1., 1, 0]),
                        implementation)
  np.testing.assert_allclose(loss, (per[0] + per[1]) / 5, rtol=1e-6)
  np.testing.assert_array_equal(paddings[1], [0] * 15 + [1] * 5)


def test_schedule_warms_up_then_decays(tones):
  config = tones.config().train
  lr = train.learning_rate_schedule(config)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(lr(config.warmup_steps), config.learning_rate, rtol=1e-6)
  np.testing.assert_allclose(lr(config.num_steps), 0.05 * config.learning_rate, rtol=1e-5)


def test_weight_decay_touches_kernels_only(tones):
  config = tones.config()
  config.train.warmup_steps = 0  # So the first update has a learning rate > 0.
  shapes = jax.eval_shape(functools.partial(train.init_state, config)).params
  params = jax.tree.map(lambda a: jnp.ones(a.shape), shapes)
  tx = train.make_optimizer(config.train)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  assert np.any(np.asarray(updates['conv_3']['kernel']) != 0)
  np.testing.assert_array_equal(updates['bn_3']['scale'], 0.0)
  np.testing.assert_array_equal(updates['conv_12']['bias'], 0.0)


def test_optimizer_state_has_one_structure_with_and_without_clipping(tones):
  """So that a run resumes with clipping switched off or on."""
  config = tones.config()
  params = {'conv_1': {'kernel': jnp.ones((3, 2))}, 'bn_1': {'scale': jnp.ones(2)}}
  clipped = jax.tree.structure(train.make_optimizer(config.train).init(params))
  config.train.grad_clip = 0.0
  assert jax.tree.structure(train.make_optimizer(config.train).init(params)) == clipped


@pytest.mark.parametrize('field, value', [('train.max_minutes', -1.0), ('train.num_steps', 0),
                                          ('train.learning_rate', 0.0), ('train.loss', 'asg'),
                                          ('train.ctc', 'torch'), ('train.ctc_unroll', -1)])
def test_config_out_of_range(tones, field, value):
  config = tones.config()
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ValueError, match=field):
    train.check_config(config)


# The step on one device and sharded.


def test_sharded_step_equals_single_device_step(tones):
  """Two steps on one device and split over four give the same state.

  Two steps, because from the third on Adam's early, nearly sign-like updates amplify float
  rounding: a 1e-7 relative change of the initial parameters moves the third step's
  parameters by ~5e-3 on a single device just the same.
  """
  config = ml_collections.FrozenConfigDict(tones.config())
  assert jax.device_count() == 4
  results = []
  for mesh in (parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()):
    state = train.jit_init_state(config, mesh)()
    step = train.jit_train_step(config, mesh)
    for batch in itertools.islice(tones.train_batches(0, mesh.size), 2):
      state, _ = step(state, parallel.shard_batch(batch, mesh))
    results.append(state)
  single, sharded = results
  kernel = sharded.params['conv_1']['kernel']
  assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 4
  assert int(sharded.step) == 2
  initial = train.jit_init_state(config, parallel.make_mesh())()
  moved = np.abs(np.asarray(single.params['conv_1']['kernel']) -
                 np.asarray(initial.params['conv_1']['kernel']))
  assert moved.max() > 1e-4
  assert_trees_equal(single, sharded, atol=2e-5)


def test_step_is_the_same_with_either_ctc(tones):
  """One step with `optax.ctc_loss` and with the forward-backward CTC: same loss and gradient."""
  mesh = parallel.make_mesh()
  batch = parallel.shard_batch(next(tones.train_batches(0, mesh.size)), mesh)
  metrics = {}
  for implementation in train.CTC_IMPLEMENTATIONS:
    config = tones.config()
    config.train.ctc = implementation
    config = ml_collections.FrozenConfigDict(config)
    _, metrics[implementation] = train.jit_train_step(config, mesh)(
        train.jit_init_state(config, mesh)(), batch)
  np.testing.assert_allclose(metrics['optax']['loss'], metrics['forward_backward']['loss'],
                             rtol=1e-6)
  # Float32 rounding of the two gradients (~1e-5 apart at the logits) through the network.
  np.testing.assert_allclose(metrics['optax']['grad_norm'],
                             metrics['forward_backward']['grad_norm'], rtol=1e-4)


def test_batch_that_does_not_split_over_devices(tones):
  with pytest.raises(ValueError, match='batch_multiple=4'):
    parallel.shard_batch(tones.make_batch(['cat', 'bee', 'hello']), parallel.make_mesh())


# The loop.


def test_training_lowers_the_loss_and_logs(tones, reference_run):
  workdir, state = reference_run
  config = tones.config()
  assert int(state.step) == config.train.num_steps
  lines = read_metrics(workdir)
  train_lines = [l for l in lines if 'loss' in l]
  eval_lines = [l for l in lines if 'ler' in l]
  assert [l['step'] for l in train_lines] == list(range(2, 33, 2))
  assert train_lines[-1]['loss'] < train_lines[0]['loss'] / 2.5
  for line in train_lines:
    assert line['audio_seconds_per_second'] > 0 and line['learning_rate'] >= 0
  elapsed = [l['elapsed_seconds'] for l in train_lines]
  assert elapsed == sorted(elapsed) and elapsed[0] > 0
  assert [l['step'] for l in eval_lines] == [16, 32]
  for line in eval_lines:
    assert line['num_utterances'] == 6 and line['split'] == config.data.eval_split
  # The last evaluation is that of the final state, redone here.
  final = evaluate.evaluate(config, {'params': state.params, 'batch_stats': state.batch_stats},
                            tones.eval_batches(1))
  assert eval_lines[-1]['ler'] == pytest.approx(final['ler'])
  assert eval_lines[-1]['wer'] == pytest.approx(final['wer'])
  assert json.loads((workdir / checkpoints.CONFIG_FILE).read_text()) == json.loads(config.to_json())
  assert checkpoints.manager(workdir).all_steps() == [16, 24, 32]  # The latest three.
  # TensorBoard holds the same numbers, read back with TensorBoard's own event reader.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  board = event_accumulator.EventAccumulator(str(workdir / train.TENSORBOARD_DIR),
                                             size_guidance={'tensors': 0})  # keep all
  board.Reload()
  scalars = lambda tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                         for e in board.Tensors(tag)]
  for name in ('loss', 'learning_rate', 'grad_norm', 'audio_seconds_per_second'):
    np.testing.assert_allclose(scalars(f'train/{name}'),
                               [(l['step'], l[name]) for l in train_lines], rtol=1e-6)
  for name in ('ler', 'wer'):
    np.testing.assert_allclose(scalars(f'{config.data.eval_split}/{name}'),
                               [(l['step'], l[name]) for l in eval_lines], rtol=1e-6)


# The first logged losses of `tones.config()` on `tones.train_batches`, recorded with this
# project's pinned versions on a CPU (nanodo-style; an AMD EPYC with AVX-512, 2 cores): a change
# in the data, the model, the loss or the optimizer that moves them shows here, even where the
# other tests still pass. The tolerances were measured across processors: XLA compiles for the
# processor it runs on, so its sums round differently on another vector width, and the tiny
# model's steep first steps grow that. Two 2-core machines of this project (different
# processors) agreed at step 2 to 1e-7 and differed by 0.2% at step 4 and 3.1% at step 6; so
# step 2 is held to 1e-4 and the later steps to 5%, to catch a change that moves the loss
# curve, not the rounding of one processor against another.
RECORDED_LOSSES = {2: (15.716185, 1e-4), 4: (15.740274, 0.05), 6: (14.935030, 0.05)}


def test_first_losses_are_the_recorded_ones(reference_run):
  workdir, _ = reference_run
  losses = {l['step']: l['loss'] for l in read_metrics(workdir) if 'loss' in l}
  for step, (recorded, tolerance) in RECORDED_LOSSES.items():
    assert losses[step] == pytest.approx(recorded, rel=tolerance), step


def test_killed_run_resumes_to_the_same_parameters(tones, reference_run, tmp_path):
  """SIGKILL after the checkpoint of step 8; the rerun ends where an uninterrupted run ends."""
  _, reference_state = reference_run
  workdir = tmp_path / 'killed'
  # The process gets the fixture's config and batches as a file (steps 0..11 are all it reads).
  with open(tmp_path / 'tones.pkl', 'wb') as f:
    pickle.dump({'config': tones.config(), 'eval': tones.eval_batches(1),
                 'train': list(itertools.islice(tones.train_batches(0, 1), 12))}, f)
  script = f"""
import os, pickle, signal, sys, time
sys.path[:0] = [{str(ROOT)!r}]
from pathlib import Path
from navai_jax.training import train

with open(sys.argv[2], 'rb') as f:
  tones = pickle.load(f)


def batches(start_step, batch_multiple):
  for step in range(start_step, len(tones['train'])):
    if step == 11:  # Steps 9..11 are done; checkpoint 8 was started after step 8.
      while not (Path(sys.argv[1]) / 'checkpoints' / '8').is_dir():
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)
    yield tones['train'][step]

train.train(tones['config'], sys.argv[1], train_batches=batches,
            eval_batches=lambda batch_multiple: tones['eval'])
"""
  done = subprocess.run([sys.executable, '-c', script, str(workdir), str(tmp_path / 'tones.pkl')],
                        env=dict(os.environ), capture_output=True, text=True, timeout=600)
  assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
  assert checkpoints.manager(workdir).all_steps() == [8]
  assert max(l['step'] for l in read_metrics(workdir)) == 10

  state = train.train(tones.config(), workdir, train_batches=tones.train_batches,
                      eval_batches=tones.eval_batches)
  assert int(state.step) == 32
  assert_trees_equal(state.params, reference_state.params, atol=1e-6)
  assert_trees_equal(state.batch_stats, reference_state.batch_stats, atol=1e-6)
  steps = [l['step'] for l in read_metrics(workdir) if 'loss' in l]
  assert steps == list(range(2, 33, 2))  # Lines after the checkpoint were not kept twice.
  assert _without_timing(read_metrics(workdir)) == _without_timing(
      read_metrics(reference_run[0]))


def test_non_finite_loss_stops_without_saving_it(tones, tmp_path):
  def batches(start_step, batch_multiple):
    for step, batch in enumerate(tones.train_batches(start_step, batch_multiple), start_step):
      if step == 9:
        batch['audio'][0, 100] = np.nan
      yield batch

  with pytest.raises(FloatingPointError, match=r'Loss is nan at step 10.*step 8'):
    train.train(tones.config(), tmp_path, train_batches=batches, eval_batches=tones.eval_batches)
  assert checkpoints.manager(tmp_path).all_steps() == [8]


def test_batches_that_run_out(tones, tmp_path):
  with pytest.raises(ValueError, match='ran out after step 3'):
    train.train(tones.config(), tmp_path,
                train_batches=lambda start, multiple: itertools.islice(
                    tones.train_batches(start, multiple), 3))


def test_max_minutes_stops_with_a_checkpoint(tones, tmp_path, monkeypatch):
  class Clock:  # Every reading is ten minutes later: each step takes ten minutes.
    now = 0.0

    def perf_counter(self):
      Clock.now += 600.0
      return Clock.now

  monkeypatch.setattr(train, 'time', Clock())
  config = tones.config()
  assert config.train.max_minutes == 60
  state = train.train(config, tmp_path, train_batches=tones.train_batches,
                      eval_batches=tones.eval_batches)
  assert int(state.step) == 6
  assert checkpoints.manager(tmp_path).all_steps() == [6]
  assert [l['step'] for l in read_metrics(tmp_path) if 'ler' in l] == [6]
  # A rerun has no time left: it restores and stops at once.
  again = train.train(config, tmp_path, train_batches=tones.train_batches,
                      eval_batches=tones.eval_batches)
  assert int(again.step) == 6
  assert_trees_equal(again.params, state.params)


def test_ctrl_c_saves_the_finished_steps_and_the_rerun_ends_as_uninterrupted(
    reference_run, tones, tmp_path, monkeypatch):
  workdir, reference_state = reference_run

  def batches(start_step, batch_multiple):
    for step, batch in enumerate(tones.train_batches(start_step, batch_multiple), start_step):
      if step == 11:  # the prefetch thread asks a few steps ahead
        monkeypatch.setattr(train.time, 'perf_counter', _interrupt)
      yield batch

  def _interrupt():
    monkeypatch.undo()
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt, match=r'Interrupted at step (\d+); the latest checkpoint '
                                              r'is step \1\. Run the same command') as stop:
    train.train(tones.config(), tmp_path, train_batches=batches,
                eval_batches=tones.eval_batches)
  step = int(str(stop.value).split()[3].rstrip(';'))
  assert checkpoints.manager(tmp_path).latest_step() == step  # saved at the stop
  assert not list(tmp_path.rglob('*orbax-checkpoint-tmp*'))
  state = train.train(tones.config(), tmp_path, train_batches=tones.train_batches,
                      eval_batches=tones.eval_batches)
  assert_trees_equal(state.params, reference_state.params, atol=1e-6)
  assert _without_timing(read_metrics(tmp_path)) == _without_timing(read_metrics(workdir))


def test_a_failed_checkpoint_save_stops_training_with_its_reason(tones, tmp_path, monkeypatch):
  def check_for_errors(self):
    if self.latest_step() == 8:
      raise OSError(28, 'No space left on device')

  monkeypatch.setattr(train.checkpoints.ocp.CheckpointManager, 'check_for_errors',
                      check_for_errors)
  with pytest.raises(ValueError, match=r'Saving a checkpoint into .* failed \(OSError: .*No '
                                       r'space left on device\)'):
    train.train(tones.config(), tmp_path, train_batches=tones.train_batches,
                eval_batches=tones.eval_batches)
  assert max(l['step'] for l in read_metrics(tmp_path)) == 8  # stopped at once, not at the end


def test_resuming_with_another_model_names_both_values(tones, reference_run):
  workdir, _ = reference_run
  config = tones.config()
  config.model.channels = 12
  with pytest.raises(ValueError, match=r'model.channels=8 in the checkpoint but 12 in the config'):
    train.train(config, workdir, train_batches=tones.train_batches)
  # The workdir still describes its checkpoints.
  assert checkpoints.read_config(workdir).model.channels == 8


def test_a_run_started_from_another_runs_weights(tones, reference_run, tmp_path):
  workdir, reference = reference_run
  config = tones.config()
  config.train.init_from = str(workdir)
  fresh = train.init_state(config)
  started = train.start_from(fresh, workdir, parallel.make_mesh())
  # Its weights and statistics, a fresh optimizer at step 0.
  assert_trees_equal(started.variables, reference.variables)
  assert_trees_equal(started.opt_state, fresh.opt_state)
  assert int(started.step) == 0
  # Trained from there, its first loss is the trained model's, far below a fresh start's.
  config.train.num_steps = 2
  train.train(config, tmp_path / 'from', train_batches=tones.train_batches,
              eval_batches=tones.eval_batches)
  first = read_metrics(tmp_path / 'from')[0]
  assert first['step'] == 2 and first['loss'] < RECORDED_LOSSES[2][0] / 2.5
  assert checkpoints.read_config(tmp_path / 'from').train.init_from == str(workdir)
  # A model of other shapes, or a folder without a run, is refused by name.
  config.model.channels = 12
  with pytest.raises(ValueError, match='init_from=.*other shapes than this config'):
    train.train(config, tmp_path / 'wide', train_batches=tones.train_batches)
  config.model.channels, config.train.init_from = 8, str(tmp_path / 'nothing')
  with pytest.raises(FileNotFoundError, match='nothing'):
    train.train(config, tmp_path / 'none', train_batches=tones.train_batches)


def _heads_config(tones):
  config = tones.config()
  config.data.train_split, config.train.language_heads = 'train+other_languages', True
  return config


def test_language_heads_read_each_row_through_its_languages_layer(tones):
  plain, config = tones.config(), _heads_config(tones)
  state = train.init_state(config)
  # The model's weights are a run's without them, and `variables` leaves them out.
  assert_trees_equal(state.variables, train.init_state(plain).variables)
  heads = state.params[train.HEADS]
  wide = config.model.wide_channels
  assert heads['kernel'].shape == (5, wide, vocab.SIZE) and not np.any(heads['bias'])
  assert np.std(heads['kernel']) == pytest.approx(np.sqrt(2 / wide), rel=0.2)
  # Language 0 is the model's output layer; language k its head k - 1 over the last hidden
  # layer (float64, literally).
  batch = tones.make_batch(['cat', 'bee', 'hello', 'a jazz cab'])
  language = np.array([0, 2, 5, 0], np.int32)
  x, frames = features.log_mel(batch['audio'], batch['audio_lengths'], config)
  logits, layers = model.apply_inference(config, state.variables, x, frames_B=frames)
  got = np.asarray(train.language_logits(config, heads, layers, logits, language))
  hidden = np.asarray(layers[model.layer_specs(config.model)[-2].name]['act'], np.float64)
  kernel, bias = np.asarray(heads['kernel'], np.float64), np.asarray(heads['bias'], np.float64)
  for row, k in enumerate(language):
    want = logits[row] if k == 0 else hidden[row] @ kernel[k - 1] + bias[k - 1]
    np.testing.assert_allclose(got[row], want, rtol=1e-5, atol=1e-5)


def test_language_heads_train_only_their_own_rows(tones):
  mesh = parallel.make_mesh()
  batch = next(tones.train_batches(0, mesh.size))
  rows = len(batch['weights'])
  after = {}
  for name, config, language in (('plain', tones.config(), None),
                                 ('english', _heads_config(tones), 0),
                                 ('italian', _heads_config(tones), 2)):
    config = ml_collections.FrozenConfigDict(config)
    given = batch if language is None else {**batch, 'language': np.full(rows, language,
                                                                         np.int32)}
    state, step = train.jit_init_state(config, mesh)(), train.jit_train_step(config, mesh)
    for _ in range(2):  # the first step's learning rate is 0
      state, metrics = step(state, parallel.shard_batch(given, mesh))
    after[name] = state, metrics
  (plain, plain_metrics), (english, english_metrics) = after['plain'], after['english']
  fresh = train.init_state(_heads_config(tones)).params[train.HEADS]
  # English rows train the model as a run without heads does, and no head.
  np.testing.assert_allclose(english_metrics['loss'], plain_metrics['loss'], rtol=1e-6)
  assert_trees_equal(english.variables, plain.variables, atol=1e-6)
  np.testing.assert_array_equal(english.params[train.HEADS]['bias'], fresh['bias'])
  # Italian rows (language 2) train head 1, not the English output layer nor another head.
  italian, _ = after['italian']
  output = model.layer_specs(tones.config().model)[-1]
  np.testing.assert_array_equal(italian.params[f'conv_{output.number}']['bias'],
                                train.init_state(tones.config()).params[f'conv_{output.number}']
                                ['bias'])
  moved = np.abs(np.asarray(italian.params[train.HEADS]['bias']) - np.asarray(fresh['bias']))
  assert moved[1].max() > 1e-4 and not np.any(np.delete(moved, 1, axis=0))


def test_other_languages_weight_scales_their_rows_in_the_loss(tones):
  mesh = parallel.make_mesh()
  batch = next(tones.train_batches(0, mesh.size))
  rows = len(batch['weights'])
  language = np.arange(rows, dtype=np.int32) % 2  # every other row Italian
  losses = {}
  for weight, weights in ((0.0, batch['weights'] * (language == 0)), (1.0, batch['weights'])):
    config = _heads_config(tones)
    config.train.other_languages_weight = weight
    config = ml_collections.FrozenConfigDict(config)
    state = train.jit_init_state(config, mesh)()
    step = train.jit_train_step(config, mesh)
    _, metrics = step(state, parallel.shard_batch({**batch, 'language': language}, mesh))
    # The same as rows weighted by hand (weight 0: as filler rows are).
    _, by_hand = train.jit_train_step(config, mesh)(
        train.jit_init_state(config, mesh)(),
        parallel.shard_batch({**batch, 'language': language, 'weights': weights}, mesh))
    np.testing.assert_allclose(metrics['loss'], by_hand['loss'], rtol=1e-6)
    losses[weight] = float(metrics['loss'])
  assert losses[0.0] != pytest.approx(losses[1.0], rel=1e-3)


def _adversary_config(tones, weight=0.5):
  config = tones.config()
  config.train.engine_adversary = weight
  return config


def test_gradient_reversal_is_the_identity_forward_and_negates_backward():
  x = jnp.array([0.5, -1.0, 2.0])
  f = lambda v: jnp.sum(jnp.sin(v) * v)
  np.testing.assert_array_equal(train.reverse_gradient(x, jnp.float32(0.3)), x)
  got = jax.grad(lambda v: f(train.reverse_gradient(v, jnp.float32(0.3))))(x)
  np.testing.assert_allclose(got, -0.3 * jax.grad(f)(x), rtol=1e-6)
  assert jax.grad(lambda s: f(train.reverse_gradient(x, s)))(jnp.float32(0.3)) == 0.0


def test_adversary_weight_ramps_up_as_ganin_et_al(tones):
  config = _adversary_config(tones, 0.2)
  config.train.num_steps = 1000
  for step in (0, 100, 300, 1000):
    p = step / 1000
    want = 0.2 * (2 / (1 + np.exp(-10 * p)) - 1)
    assert float(train.adversary_weight(config.train, step)) == pytest.approx(want, rel=1e-5)
  assert float(train.adversary_weight(config.train, 0)) == 0.0


def test_engine_loss_is_the_cross_entropy_of_the_named_real_frames():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 6, len(data.ENGINE_IDS))).astype(np.float32)
  engine = np.array([3, 0, 1, 10], np.int32)  # row 1: no engine named
  weights = np.array([1, 1, 1, 0], np.float32)  # row 3: a filler row
  lengths = np.array([6, 6, 2, 6], np.int32)
  log_p = logits.astype(np.float64)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  terms = [-log_p[0, u, 2] for u in range(6)] + [-log_p[2, u, 0] for u in range(2)]
  got = train.engine_loss(logits, engine, weights, lengths)
  np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)
  assert float(train.engine_loss(logits, np.zeros(4, np.int32), weights, lengths)) == 0.0


def test_engine_adversary_reverses_its_gradient_into_the_model(tones):
  config = _adversary_config(tones)
  state = train.init_state(config)
  # The model's weights are a run's without it, and `variables` leaves it out.
  assert_trees_equal(state.variables, train.init_state(tones.config()).variables)
  adversary = state.params[train.ADVERSARY]
  assert adversary['out']['kernel'].shape == (train.ADVERSARY_WIDTH, len(data.ENGINE_IDS))
  batch = tones.make_batch(['cat', 'bee', 'hello', 'a jazz cab'])
  x, frames = features.log_mel(batch['audio'], batch['audio_lengths'], config)
  _, layers = model.apply_inference(config, state.variables, x, frames_B=frames)
  hidden = layers[model.layer_specs(config.model)[-2].name]['act']
  lengths = model.output_length(model.layer_specs(config.model), frames)
  engine = np.array([1, 2, 3, 2], np.int32)
  loss = lambda params, h, scale: train.engine_loss(
      train.engine_logits(params, train.reverse_gradient(h, scale)), engine, batch['weights'],
      lengths)
  # The adversary descends its loss; the layers below get its gradient times -scale.
  by_adversary = jax.grad(loss)(adversary, hidden, jnp.float32(0.0))
  by_layers = jax.grad(loss, argnums=1)(adversary, hidden, jnp.float32(0.0))
  plain = jax.grad(lambda h: train.engine_loss(train.engine_logits(adversary, h), engine,
                                               batch['weights'], lengths))(hidden)
  assert_trees_equal(by_adversary, jax.grad(loss)(adversary, hidden, jnp.float32(0.7)))
  assert not np.any(by_layers)
  np.testing.assert_allclose(jax.grad(loss, argnums=1)(adversary, hidden, jnp.float32(0.7)),
                             -0.7 * plain, rtol=1e-5, atol=1e-8)
  # Central differences of the adversary's loss along the hidden layer's own gradient.
  h64 = np.asarray(hidden, np.float64)
  direction = np.asarray(plain, np.float64) / np.linalg.norm(plain)
  eps = 1e-2
  at = lambda h: float(train.engine_loss(
      train.engine_logits(adversary, jnp.asarray(h, jnp.float32)), engine, batch['weights'],
      lengths))
  slope = (at(h64 + eps * direction) - at(h64 - eps * direction)) / (2 * eps)
  assert slope == pytest.approx(float(np.sum(plain * direction)), rel=2e-2)


def test_engine_adversary_leaves_the_model_alone_until_it_ramps_up(tones):
  mesh = parallel.make_mesh()
  batch = next(tones.train_batches(0, mesh.size))
  rows = len(batch['weights'])
  named = {**batch, 'engine': (np.arange(rows, dtype=np.int32) % 3) + 1}
  unnamed = {**batch, 'engine': np.zeros(rows, np.int32)}
  after = {}
  for name, config, given, steps in (('plain', tones.config(), batch, None),
                                     ('unnamed', _adversary_config(tones), unnamed, None),
                                     ('named', _adversary_config(tones), named, None),
                                     ('plain_long', tones.config(), batch, 10**9),
                                     ('named_long', _adversary_config(tones), named, 10**9)):
    if steps:  # so long a run that its ramp keeps the adversary's weight near 0 (2.5e-9)
      config.train.num_steps = steps
    config = ml_collections.FrozenConfigDict(config)
    state, step = train.jit_init_state(config, mesh)(), train.jit_train_step(config, mesh)
    history = []
    for _ in range(3):  # step 0's learning rate and adversary weight are 0
      state, metrics = step(state, parallel.shard_batch(given, mesh))
      history.append(jax.device_get((state, metrics)))  # the next step donates `state`
    after[name] = history
  fresh = train.init_state(_adversary_config(tones)).params[train.ADVERSARY]
  differ = lambda a, b: max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))
  # Without an engine named, the run is a run without the adversary, which gets no gradient.
  for (state, metrics), (plain, _) in zip(after['unnamed'], after['plain']):
    assert_trees_equal(state.variables, plain.variables, atol=1e-6)
    assert float(metrics['engine_loss']) == 0.0
  biases = lambda adversary: [adversary['hidden']['bias'], adversary['out']['bias']]
  assert_trees_equal(biases(after['unnamed'][2][0].params[train.ADVERSARY]), biases(fresh))
  # (its kernels only shrink by weight decay)
  # Engines named, at a weight near 0: the model trains as without it; the adversary learns.
  for (state, metrics), (plain, plain_metrics) in zip(after['named_long'], after['plain_long']):
    np.testing.assert_allclose(metrics['loss'], plain_metrics['loss'], rtol=1e-5)
    assert_trees_equal(state.variables, plain.variables, atol=1e-5)
  assert float(after['named_long'][1][1]['engine_loss']) > 0.0
  assert differ(biases(after['named_long'][2][0].params[train.ADVERSARY]), biases(fresh)) > 1e-4
  # Ramped up (0.078 at step 1 of 32), the reversed gradient moves the model.
  assert differ(after['named'][2][0].variables['params'],
                after['plain'][2][0].variables['params']) > 1e-4


@pytest.mark.parametrize('head', ['engine_adversary', 'phoneme_head'])
def test_a_run_with_a_training_only_head_saves_it_and_is_read_without(tones, tmp_path, head):
  config = tones.config()
  config.train[head] = 0.5
  config.train.num_steps = 4
  rows = lambda b: {**b, 'engine': np.ones(len(b['weights']), np.int32),
                    'phonemes': _tone_targets(b)}
  train_batches = lambda start, multiple: map(rows, tones.train_batches(start, multiple))
  state = train.train(config, tmp_path / 'run', train_batches=train_batches,
                      eval_batches=tones.eval_batches)
  logged = read_metrics(tmp_path / 'run')
  loss = {'engine_adversary': 'engine_loss', 'phoneme_head': 'phoneme_loss'}[head]
  assert all(np.isfinite(r[loss]) for r in logged if 'loss' in r)
  _, variables, step = checkpoints.load_for_inference(tmp_path / 'run')
  assert step == 4
  assert_trees_equal(variables, state.variables)
  # Resumed without it, it is refused by name, and its checkpoints are kept.
  config.train[head], config.train.num_steps = 0.0, 6
  with pytest.raises(ValueError, match=rf"params\['{head}'\] \(config.train.{head}\) in the "
                                       'checkpoint but not'):
    train.train(config, tmp_path / 'run', train_batches=train_batches)
  assert checkpoints.manager(tmp_path / 'run').latest_step() == 4


def _tone_targets(batch):
  """Phoneme targets of a tones batch (`data.batches`' 'phonemes'): 1 + ARPAbet's 'aa' at
  each feature frame whose window holds a tone, 0 at silence, -1 past the audio."""
  c = default.get_config('tiny').features
  audio = np.asarray(batch['audio'])
  frames = int(features.num_frames(audio.shape[1], c.window, c.hop))
  starts = np.arange(frames) * c.hop
  loud = np.stack([np.abs(audio[:, s:s + c.window]).max(1) > 0.1 for s in starts], 1)
  real = starts[None] + c.window <= np.asarray(batch['audio_lengths'])[:, None]
  return np.where(real, np.where(loud, 1 + phonemes.ARPABET.index('aa'), 0), -1).astype(np.int32)


def _phoneme_config(tones, weight=1.0, layer=0):
  config = tones.config()
  config.train.phoneme_head, config.train.phoneme_layer = weight, layer
  return config


def test_position_targets_are_the_frames_at_the_centres_of_their_windows(tones):
  c = tones.config().features
  frame_u = np.arange(40)
  targets = np.tile(np.arange(100, dtype=np.int32), (2, 1))  # each frame's target: its number
  read = np.array([12000, 12000])
  played = np.array([12000, 24000])  # row 1 played at half speed: twice as long
  # Layer 1 (kernel 48, stride 2) and the middle layers (kernel 7) centre output u on frame 2u;
  # the last hidden layer (after one of kernel 32) on 2u + 1.
  for layer, centre in ((3, 2 * frame_u), (0, 2 * frame_u + 1)):
    got = np.asarray(train.position_targets(_phoneme_config(tones, layer=layer), targets, read,
                                            played, 40))
    np.testing.assert_array_equal(got[0], np.minimum(centre, 99))
    at_half_speed = np.round(((centre * c.hop + c.window / 2) / 2 - c.window / 2) / c.hop)
    np.testing.assert_array_equal(got[1], np.clip(at_half_speed, 0, 99))
  with pytest.raises(ValueError, match=r'config.train.phoneme_layer=12 must be a hidden layer, '
                                       r'1..11, or 0 for the last one'):
    train.check_config(_phoneme_config(tones, layer=12))


def test_phoneme_weight_counts_for_the_first_phoneme_steps_only(tones):
  config = _phoneme_config(tones, weight=0.5)
  assert [float(train.phoneme_weight(config.train, s)) for s in (0, 1, 10**6)] == [0.5] * 3
  config.train.phoneme_steps = 3
  assert [float(train.phoneme_weight(config.train, s)) for s in (0, 2, 3, 4)] == [
      0.5, 0.5, 0.0, 0.0]


def test_phoneme_loss_is_the_cross_entropy_of_the_real_positions_with_a_target():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 5, 40)).astype(np.float32)
  targets = np.array([[0, 7, -1, 39, 2], [1, 1, 1, 1, 1], [5, 5, 5, 5, 5]], np.int32)
  weights = np.array([1, 1, 0], np.float32)  # row 2: a filler row
  lengths = np.array([5, 2, 5], np.int32)
  log_p = logits.astype(np.float64)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  terms = [-log_p[0, u, t] for u, t in ((0, 0), (1, 7), (3, 39), (4, 2))]
  terms += [-log_p[1, u, 1] for u in range(2)]
  got = train.phoneme_loss(logits, targets, weights, lengths)
  np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)
  assert float(train.phoneme_loss(logits, np.full((3, 5), -1), weights, lengths)) == 0.0


def test_a_phoneme_head_trains_the_model_only_where_there_are_targets(tones):
  mesh = parallel.make_mesh()
  batch = next(tones.train_batches(0, mesh.size))
  timed = {**batch, 'phonemes': _tone_targets(batch)}
  untimed = {**batch, 'phonemes': np.full_like(timed['phonemes'], -1)}
  after = {}
  for name, config, given, steps in (('plain', tones.config(), timed, 3),
                                     ('untimed', _phoneme_config(tones), untimed, 3),
                                     ('timed', _phoneme_config(tones), timed, 20)):
    config = ml_collections.FrozenConfigDict(config)
    state, step = train.jit_init_state(config, mesh)(), train.jit_train_step(config, mesh)
    history = []
    for _ in range(steps):
      state, metrics = step(state, parallel.shard_batch(given, mesh))
      history.append(jax.device_get((state, metrics)))  # the next step donates `state`
    after[name] = history
  # The head's weights are a key of their own: the model's start as a run's without it.
  assert_trees_equal(train.init_state(_phoneme_config(tones)).variables,
                     train.init_state(tones.config()).variables)
  # Without targets, the run is a run without the head.
  for (state, metrics), (plain, plain_metrics) in zip(after['untimed'], after['plain']):
    assert float(metrics['phoneme_loss']) == 0.0
    np.testing.assert_allclose(metrics['loss'], plain_metrics['loss'], rtol=1e-6)
    assert_trees_equal(state.variables, plain.variables, atol=1e-6)
  # With them, it learns tone from silence, and the model with it.
  losses = [float(m['phoneme_loss']) for _, m in after['timed']]
  assert losses[-1] < 0.5 * losses[0]
  differ = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))),
                                        after['timed'][2][0].variables['params'],
                                        after['plain'][2][0].variables['params']))
  assert max(differ) > 1e-4


def test_a_run_with_language_heads_saves_them_and_is_read_without(tones, tmp_path):
  config = _heads_config(tones)
  config.train.num_steps, config.train.eval_every = 8, 8

  def train_batches(start_step, batch_multiple):
    for i, batch in enumerate(tones.train_batches(start_step, batch_multiple), start_step):
      yield {**batch, 'language': (np.arange(len(batch['weights'])) + i) % 3}

  state = train.train(config, tmp_path / 'heads', train_batches=train_batches,
                      eval_batches=tones.eval_batches)
  assert np.any(state.params[train.HEADS]['bias'])
  # Inference reads the model alone; the training state keeps the heads for a resumed run.
  _, variables, step = checkpoints.load_for_inference(tmp_path / 'heads')
  assert step == 8
  assert_trees_equal(variables, state.variables)
  config.train.num_steps = 10
  resumed = train.train(config, tmp_path / 'heads', train_batches=train_batches,
                        eval_batches=tones.eval_batches)
  assert int(resumed.step) == 10 and np.any(resumed.params[train.HEADS]['bias']
                                            != state.params[train.HEADS]['bias'])
  # Resumed without them, it is refused by name, and its checkpoints are kept.
  config.train.language_heads = False
  with pytest.raises(ValueError, match=r"params\['language_heads'\] \(config.train."
                                       r'language_heads\) in the checkpoint but not in the '
                                       r'config'):
    train.train(config, tmp_path / 'heads', train_batches=train_batches)
  assert checkpoints.manager(tmp_path / 'heads').latest_step() == 10
  config.train.language_heads = True
  # Another run starts from its model, with heads of its own, or without any.
  for heads in (True, False):
    other = _heads_config(tones) if heads else tones.config()
    started = train.start_from(train.init_state(other), tmp_path / 'heads', parallel.make_mesh())
    assert_trees_equal(started.variables, resumed.variables)
    assert (train.HEADS in started.params) == heads
  # Asked for without the split they read, they are refused by name.
  config.data.train_split = 'train'
  with pytest.raises(ValueError, match="language_heads=True needs the split 'other_languages'"):
    train.check_config(config)


def test_resuming_with_other_settings_lists_them_and_keeps_config_json(reference_run, tones):
  workdir, _ = reference_run
  before = (workdir / checkpoints.CONFIG_FILE).read_text()
  config = tones.config()
  config.seed = 7
  config.train.learning_rate = 0.5
  config.data.source = 'folder:OTHER'
  with pytest.raises(ValueError) as error:
    train.train(config, workdir, train_batches=tones.train_batches)
  message = str(error.value)
  for change in ("data.source: 'folder:data/corpus' in config.json, 'folder:OTHER' now",
                 'seed: 0 in config.json, 7 now', 'train.learning_rate: 0.01 in config.json, 0.5'):
    assert change in message
  assert (workdir / checkpoints.CONFIG_FILE).read_text() == before
  # Settings that decide only how long it runs and what it logs may change.
  config = tones.config()
  config.train.max_minutes, config.eval.num_examples = 30.0, 1
  state = train.train(config, workdir, train_batches=tones.train_batches)
  assert int(state.step) == config.train.num_steps
  assert checkpoints.read_config(workdir).train.max_minutes == 30.0


def _without_timing(lines):
  return [{k: v for k, v in l.items() if k not in ('audio_seconds_per_second', 'elapsed_seconds')}
          for l in lines]


def test_stopped_and_resumed_metrics_equal_an_uninterrupted_run(tones, tmp_path):
  """Checkpoints every 3 steps, logs every 2: a run whose batches end after step 5 resumes from
  step 3 with the loss of step 3 still to be averaged into the line of step 4, and drops the
  lines it wrote after step 3; a run that stops before its first checkpoint leaves no lines
  behind."""
  config = tones.config()
  config.train.update({'num_steps': 10, 'checkpoint_every': 3, 'eval_every': 4})
  train.train(config, tmp_path / 'whole', train_batches=tones.train_batches,
              eval_batches=tones.eval_batches)
  whole = _without_timing(read_metrics(tmp_path / 'whole'))
  for stop in (5, 2):
    workdir = tmp_path / f'stopped_{stop}'
    with pytest.raises(ValueError, match=f'ran out after step {stop}'):
      train.train(config, workdir, eval_batches=tones.eval_batches,
                  train_batches=lambda start, multiple, stop=stop: itertools.islice(
                      tones.train_batches(start, multiple), stop))
    train.train(config, workdir, train_batches=tones.train_batches,
                eval_batches=tones.eval_batches)
    assert _without_timing(read_metrics(workdir)) == whole, stop


def test_train_script_rejects_out_of_range_flags(tmp_path):
  done = subprocess.run(
      [sys.executable, 'experiments/train.py', '--config=navai_jax/configs/default.py:tiny',
       f'--workdir={tmp_path}', '--config.train.max_minutes=-1'],
      cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)}, capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 1
  assert 'config.train.max_minutes must be >= 0' in done.stderr
  assert 'Traceback' not in done.stderr


def test_a_second_run_into_a_busy_workdir_refuses_and_leaves_it_alone(tones, tmp_path):
  workdir = tmp_path / 'busy'
  with files.locked(workdir, 'training (tiny)'):
    with pytest.raises(files.FolderInUse, match=r'busy is in use by training \(tiny\) \(pid '
                                                rf'{os.getpid()}, since'):
      train.train(tones.config(), workdir, train_batches=tones.train_batches,
                  eval_batches=tones.eval_batches)
  assert sorted(p.name for p in workdir.iterdir()) == [files.LOCK_FILE]  # nothing written


# Two hosts: `experiments/train.py --multihost` as two local processes of one device each.


def _train_command(corpus, workdir, steps):
  return [sys.executable, 'experiments/train.py', f'--workdir={workdir}',
          f'--config={ROOT}/navai_jax/configs/default.py:tiny',
          f'--config.data.source=folder:{corpus}', '--config.data.reader=direct',
          '--config.data.train_split=dev', '--config.data.batch_seconds=8',
          f'--config.train.num_steps={steps}', '--config.train.checkpoint_every=3',
          '--config.train.log_every=1', '--config.train.eval_every=0']


def test_two_hosts_train_the_model_one_host_trains_and_resume_after_a_kill(
    tmp_path, write_split, local_hosts):
  rng = np.random.default_rng(0)
  write_split(tmp_path / 'corpus', 'dev', ['cat sat', 'a dog', 'bee', 'hello you', 'quiet fox',
                                           'jazz'],
              audio=lambda i, _: (0.1 * rng.normal(size=32000)).astype(np.float32))
  corpus = tmp_path / 'corpus'
  # Here, on two devices: the same global batch and mesh size as two hosts of one, and the
  # config the command's flags make.
  config = default.get_config('tiny')
  config.data.update(source=f'folder:{corpus}', reader='direct', train_split='dev',
                     batch_seconds=8)
  config.train.update(num_steps=6, checkpoint_every=3, log_every=1, eval_every=0)
  train.train(config, tmp_path / 'one', mesh=parallel.make_mesh(jax.devices()[:2]))
  # Two hosts, killed: host 1 dies once checkpoint 3 is written; host 0 is then killed too.
  # Rerun, they end where the one process ends, with its metrics.
  hosts = local_hosts.start(_train_command(corpus, tmp_path / 'killed', 6),
                            tmp_path / 'logs_killed')
  deadline = time.monotonic() + 600
  while not (tmp_path / 'killed' / 'checkpoints' / '3').is_dir():
    assert time.monotonic() < deadline and hosts[0].poll() is None, (
        (tmp_path / 'logs_killed' / 'host0.txt').read_text()[-3000:])
    time.sleep(0.1)
  hosts[1].kill()
  hosts[0].kill()
  for host in hosts:
    host.wait()
  steps = checkpoints.manager(tmp_path / 'killed').all_steps()
  assert 3 in steps and 6 not in steps
  local_hosts.wait(local_hosts.start(_train_command(corpus, tmp_path / 'killed', 6),
                                     tmp_path / 'logs_resumed'), tmp_path / 'logs_resumed')
  reference = checkpoints.load_for_inference(tmp_path / 'one')
  assert reference[2] == 6
  _, variables, step = checkpoints.load_for_inference(tmp_path / 'killed')
  assert step == 6
  # Each process runs its device's convolutions with its own threads, which sum in another order
  # than one process's two devices do; Adam turns that rounding into a different step where a
  # gradient element is near zero. Measured: 4.3e-5 at most (Intel Xeon, AVX-512), 1.4% of one
  # step's learning rate (3e-3); batch statistics 3e-7.
  assert_trees_equal(variables['params'], reference[1]['params'], atol=1e-4)
  assert_trees_equal(variables['batch_stats'], reference[1]['batch_stats'], atol=1e-5)
  losses = lambda run: [l['loss'] for l in read_metrics(tmp_path / run) if 'loss' in l]
  np.testing.assert_allclose(losses('killed'), losses('one'), rtol=1e-5)
  assert len(losses('one')) == 6
