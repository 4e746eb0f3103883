"""Training: augmentation, loss, sharded step == one device, loss falls, kill-and-resume.

Data are made up: each character is a 80 ms sine tone whose pitch names its token, so a tiny
model learns the transcripts within a few dozen steps. Every training test uses `tiny_config()`
and batches of one shape, so one compiled step serves them all within a test process.
"""

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from navai_jax import augment
from navai_jax import checkpoints
from navai_jax import features
from navai_jax import parallel
from navai_jax import train
from navai_jax import vocab
from navai_jax.configs import default

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
TEXTS = ('cat', 'dog sat', 'bee', 'hello', 'a jazz cab', 'quiet fox')


def tone_audio(text: str, letter_seconds: float = 0.08) -> np.ndarray:
  """Each character a tone at 150 + 110 * token id Hz; a space is silence."""
  n = int(letter_seconds * RATE)
  t = np.arange(n) / RATE
  parts = [np.zeros(n // 2)]
  for ch in text:
    pitch = 150 + 110 * vocab.TOKENS.index(ch)
    parts.append(np.zeros(n) if ch == ' ' else 0.5 * np.sin(2 * np.pi * pitch * t))
  parts.append(np.zeros(n // 2))
  return np.concatenate(parts).astype(np.float32)


NUM_SAMPLES = max(len(tone_audio(t)) for t in TEXTS)
LABEL_WIDTH = max(len(vocab.encode(t)) for t in TEXTS)


def make_batch(texts, weights=None, num_samples=NUM_SAMPLES, label_width=LABEL_WIDTH):
  """A batch as `data.batches` yields it."""
  size = len(texts)
  batch = {'audio': np.zeros((size, num_samples), np.float32),
           'audio_lengths': np.zeros(size, np.int32),
           'labels': np.zeros((size, label_width), np.int32),
           'label_paddings': np.ones((size, label_width), np.float32),
           'id': np.array([f'0-0-{i}' for i in range(size)]), 'text': np.array(texts),
           'weights': np.ones(size, np.float32) if weights is None else
                      np.asarray(weights, np.float32)}
  for row, text in enumerate(texts):
    audio, labels = tone_audio(text), vocab.encode(text)
    batch['audio'][row, :len(audio)] = audio
    batch['audio_lengths'][row] = len(audio)
    batch['labels'][row, :len(labels)] = labels
    batch['label_paddings'][row, :len(labels)] = 0.0
  return batch


def fake_train_batches(start_step, batch_multiple):
  """Batch s holds 4 of the texts, chosen by a generator seeded with s (as data.batches does)."""
  assert 4 % batch_multiple == 0
  for step in itertools.count(start_step):
    chosen = np.random.default_rng(step).choice(len(TEXTS), 4, replace=False)
    yield make_batch([TEXTS[i] for i in chosen])


def fake_eval_batches(batch_multiple):
  """All texts once, plus two filler rows of weight 0."""
  assert 8 % batch_multiple == 0
  return [make_batch(list(TEXTS) + ['cat', 'cat'], weights=[1] * 6 + [0, 0])]


def tiny_config():
  config = default.get_config('tiny')
  config.train.learning_rate = 1e-2
  config.train.num_steps = 32
  config.train.log_every = 2
  config.train.checkpoint_every = 8
  config.train.eval_every = 16
  config.train.max_minutes = 60.0
  # Masks narrower than a tone, so the made-up transcripts stay learnable.
  config.augment.time_masks = 1
  config.augment.time_mask_width = 4
  config.augment.freq_masks = 1
  config.augment.freq_mask_width = 8
  return config


def read_metrics(workdir):
  return [json.loads(line) for line in (Path(workdir) / train.METRICS_FILE).read_text().splitlines()]


def assert_trees_equal(a, b, atol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """An uninterrupted run of `tiny_config()`: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp('reference')
  state = train.train(tiny_config(), workdir, train_batches=fake_train_batches,
                      eval_batches=fake_eval_batches)
  return workdir, state


# Augmentation.

def _features(key, frames):
  x = jax.random.normal(key, (len(frames), 60, 128)) + 3.0  # No value is 0 by chance.
  valid = jnp.arange(60)[None] < jnp.asarray(frames)[:, None]
  return jnp.where(valid[..., None], x, 0.0), jnp.asarray(frames)


def test_frequency_masks_zero_whole_bands_of_bounded_width():
  x, frames = _features(jax.random.key(0), [60, 40, 25])
  y = augment.frequency_masks(x, jax.random.key(1), num_masks=2, max_width=12)
  masked_BxF = np.all(np.asarray(y) == 0, axis=1)
  changed = np.asarray(y != x)
  # Only whole bins (every frame) change, at most 2 bands of at most 12 bins each.
  np.testing.assert_array_equal(changed, masked_BxF[:, None, :] & np.asarray(x != 0))
  for row in masked_BxF:
    assert row.sum() <= 24
    runs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])) == 1)
    assert len(runs) <= 2
  assert masked_BxF.any()


def test_time_masks_stay_inside_each_utterance():
  x, frames = _features(jax.random.key(2), [60, 40, 25])
  for seed in range(5):
    y = np.asarray(augment.time_masks(x, frames, jax.random.key(seed), num_masks=2,
                                      max_width=20))
    masked_BxT = np.all(y == 0, axis=2)
    for row, n in enumerate(frames):
      hit = np.flatnonzero(masked_BxT[row, :n])
      assert hit.size <= 40
      np.testing.assert_array_equal(y[row, n:], 0.0)  # Padding untouched (still zero).
    np.testing.assert_array_equal(y[~masked_BxT], np.asarray(x)[~masked_BxT])


def test_noise_has_its_std_and_spares_padding():
  x, frames = _features(jax.random.key(3), [60, 40])
  y = augment.gaussian_noise(x, frames, jax.random.key(4), std=0.5)
  noise = np.asarray(y - x)
  assert abs(noise[0].std() - 0.5) < 0.02 and abs(noise[1, :40].std() - 0.5) < 0.03
  np.testing.assert_array_equal(noise[1, 40:], 0.0)


def test_warp_positions_follow_the_vtlp_formula():
  positions = np.asarray(augment.warp_positions(jnp.array([1.0, 0.9, 1.1]), 16000, 128))
  np.testing.assert_allclose(positions[0], np.arange(128), atol=1e-3)  # alpha = 1: identity.
  centre_hz = features.mel_frequencies(tiny_config())
  step = features.hz_to_mel(8000.0) / 129
  for row, alpha in ((1, 0.9), (2, 1.1)):
    knee = augment.VTLP_BOUNDARY_HZ * min(alpha, 1.0) / alpha
    source_hz = np.where(centre_hz <= knee, alpha * centre_hz,
                         8000 - (8000 - alpha * knee) * (8000 - centre_hz) / (8000 - knee))
    wanted = np.clip(features.hz_to_mel(source_hz) / step - 1, 0, 127)
    np.testing.assert_allclose(positions[row], wanted, atol=2e-3)
    assert np.all(np.diff(positions[row]) > 0)  # Monotone: no bin is read twice.
  assert positions[2, -1] == 127  # Nyquist stays in place.


def test_frequency_warp_moves_a_tone_and_spares_padding():
  config = tiny_config()
  t = np.arange(16000) / 16000
  tone = np.sin(2 * np.pi * 2000 * t)
  audio = np.stack([tone, np.where(t < 0.5, tone, 0)])
  x, frames = features.log_mel(jnp.asarray(audio, jnp.float32), jnp.array([16000, 8000]), config)
  centre_hz = features.mel_frequencies(config)
  peaks = {}
  for seed in range(20):
    y = np.asarray(augment.frequency_warp(x, jax.random.key(seed), 0.2, 16000))
    np.testing.assert_array_equal(y[1, int(frames[1]):], 0.0)
    # Each output bin is the linear interpolation of the input at its warp position.
    alpha = jax.random.uniform(jax.random.key(seed), (2,), minval=0.8, maxval=1.2)
    positions = np.asarray(augment.warp_positions(alpha, 16000, 128))
    wanted = np.interp(positions[0], np.arange(128), np.asarray(x[0, 10]))
    np.testing.assert_allclose(y[0, 10], wanted, atol=1e-4)
    peaks[float(alpha[0])] = centre_hz[np.argmax(y[0].mean(0))]
  # alpha > 1 reads higher frequencies into lower bins: the tone moves down to ~2000 / alpha.
  for alpha, peak in peaks.items():
    assert abs(peak - 2000 / alpha) < 0.05 * 2000 / alpha, (alpha, peak)


def test_augment_is_a_function_of_the_key():
  config = tiny_config()
  x, frames = _features(jax.random.key(5), [60, 33])
  a = augment.augment(x, frames, jax.random.key(6), config.augment)
  b = augment.augment(x, frames, jax.random.key(6), config.augment)
  c = augment.augment(x, frames, jax.random.key(7), config.augment)
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  np.testing.assert_array_equal(np.asarray(a)[1, 33:], 0.0)


@pytest.mark.parametrize('field, value', [('freq_mask_width', 200), ('time_masks', -1),
                                          ('noise_std', -0.1), ('warp', 1.0), ('warp', -0.1)])
def test_augment_config_out_of_range(field, value):
  config = tiny_config()
  config.augment[field] = value
  with pytest.raises(ValueError, match=f'augment.{field}'):
    augment.check_config(config)


# Loss, schedule and optimizer.

@pytest.mark.parametrize('implementation', train.CTC_IMPLEMENTATIONS)
def test_ctc_loss_is_per_token_and_ignores_filler_rows(implementation):
  key = jax.random.key(0)
  logits = jax.random.normal(key, (3, 20, vocab.SIZE))
  paddings = train.logit_paddings(jnp.array([20, 15, 20]), 20)
  labels = jnp.array([[3, 4, 5], [6, 7, 0], [8, 0, 0]])
  label_paddings = jnp.array([[0., 0, 0], [0, 0, 1], [0, 1, 1]])
  per = optax.ctc_loss(logits, paddings, labels, label_paddings, blank_id=0)
  loss = train.ctc_loss(logits, paddings, labels, label_paddings, jnp.array([1., 1, 0]),
                        implementation)
  np.testing.assert_allclose(loss, (per[0] + per[1]) / 5, rtol=1e-6)
  np.testing.assert_array_equal(paddings[1], [0] * 15 + [1] * 5)


def test_schedule_warms_up_then_decays():
  config = tiny_config().train
  lr = train.learning_rate_schedule(config)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(lr(config.warmup_steps), config.learning_rate, rtol=1e-6)
  np.testing.assert_allclose(lr(config.num_steps), 0.05 * config.learning_rate, rtol=1e-5)


def test_weight_decay_touches_kernels_only():
  config = tiny_config()
  config.train.warmup_steps = 0  # So the first update has a learning rate > 0.
  shapes = jax.eval_shape(functools.partial(train.init_state, config)).params
  params = jax.tree.map(lambda a: jnp.ones(a.shape), shapes)
  tx = train.make_optimizer(config.train)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  assert np.any(np.asarray(updates['conv_3']['kernel']) != 0)
  np.testing.assert_array_equal(updates['bn_3']['scale'], 0.0)
  np.testing.assert_array_equal(updates['conv_12']['bias'], 0.0)


def test_optimizer_state_has_one_structure_with_and_without_clipping():
  """So that a run resumes with clipping switched off or on."""
  config = tiny_config()
  params = {'conv_1': {'kernel': jnp.ones((3, 2))}, 'bn_1': {'scale': jnp.ones(2)}}
  clipped = jax.tree.structure(train.make_optimizer(config.train).init(params))
  config.train.grad_clip = 0.0
  assert jax.tree.structure(train.make_optimizer(config.train).init(params)) == clipped


@pytest.mark.parametrize('field, value', [('train.max_minutes', -1.0), ('train.num_steps', 0),
                                          ('train.learning_rate', 0.0), ('train.loss', 'asg'),
                                          ('train.ctc', 'torch'), ('train.ctc_unroll', -1)])
def test_config_out_of_range(field, value):
  config = tiny_config()
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ValueError, match=field):
    train.check_config(config)


# The step on one device and sharded.

def test_sharded_step_equals_single_device_step():
  """Two steps on one device and split over four give the same state.

  Two steps, because from the third on Adam's early, nearly sign-like updates amplify float
  rounding: a 1e-7 relative change of the initial parameters moves the third step's
  parameters by ~5e-3 on a single device just the same.
  """
  config = ml_collections.FrozenConfigDict(tiny_config())
  assert jax.device_count() == 4
  results = []
  for mesh in (parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()):
    state = train.jit_init_state(config, mesh)()
    step = train.jit_train_step(config, mesh)
    for batch in itertools.islice(fake_train_batches(0, mesh.size), 2):
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


def test_step_is_the_same_with_either_ctc():
  """One step with `optax.ctc_loss` and with the forward-backward CTC: same loss and gradient."""
  mesh = parallel.make_mesh()
  batch = parallel.shard_batch(next(fake_train_batches(0, mesh.size)), mesh)
  metrics = {}
  for implementation in train.CTC_IMPLEMENTATIONS:
    config = tiny_config()
    config.train.ctc = implementation
    config = ml_collections.FrozenConfigDict(config)
    _, metrics[implementation] = train.jit_train_step(config, mesh)(
        train.jit_init_state(config, mesh)(), batch)
  np.testing.assert_allclose(metrics['optax']['loss'], metrics['forward_backward']['loss'],
                             rtol=1e-6)
  # Float32 rounding of the two gradients (~1e-5 apart at the logits) through the network.
  np.testing.assert_allclose(metrics['optax']['grad_norm'],
                             metrics['forward_backward']['grad_norm'], rtol=1e-4)


def test_batch_that_does_not_split_over_devices():
  with pytest.raises(ValueError, match='batch_multiple=4'):
    parallel.shard_batch(make_batch(['cat', 'bee', 'hello']), parallel.make_mesh())


# The loop.

def test_training_lowers_the_loss_and_logs(reference_run):
  workdir, state = reference_run
  config = tiny_config()
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
    assert line['ler'] >= 0 and line['wer'] >= 0
  assert json.loads((workdir / checkpoints.CONFIG_FILE).read_text()) == config.to_dict()
  assert checkpoints.manager(workdir).all_steps() == [16, 24, 32]  # The latest three.


def test_killed_run_resumes_to_the_same_parameters(reference_run, tmp_path):
  """SIGKILL after the checkpoint of step 8; the rerun ends where an uninterrupted run ends."""
  _, reference_state = reference_run
  workdir = tmp_path / 'killed'
  script = f"""
import os, signal, sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
from pathlib import Path
import train_test
from navai_jax import train

def batches(start_step, batch_multiple):
  for step, batch in enumerate(train_test.fake_train_batches(start_step, batch_multiple),
                               start_step):
    if step == 11:  # Steps 9..11 are done; checkpoint 8 was started after step 8.
      while not (Path(sys.argv[1]) / 'checkpoints' / '8').is_dir():
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)
    yield batch

train.train(train_test.tiny_config(), sys.argv[1], train_batches=batches,
            eval_batches=train_test.fake_eval_batches)
"""
  done = subprocess.run([sys.executable, '-c', script, str(workdir)], env=dict(os.environ),
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
  assert checkpoints.manager(workdir).all_steps() == [8]
  assert max(l['step'] for l in read_metrics(workdir)) == 10

  state = train.train(tiny_config(), workdir, train_batches=fake_train_batches,
                      eval_batches=fake_eval_batches)
  assert int(state.step) == 32
  assert_trees_equal(state.params, reference_state.params, atol=1e-6)
  assert_trees_equal(state.batch_stats, reference_state.batch_stats, atol=1e-6)
  steps = [l['step'] for l in read_metrics(workdir) if 'loss' in l]
  assert steps == list(range(2, 33, 2))  # Lines after the checkpoint were not kept twice.


def test_non_finite_loss_stops_without_saving_it(tmp_path):
  def batches(start_step, batch_multiple):
    for step, batch in enumerate(fake_train_batches(start_step, batch_multiple), start_step):
      if step == 9:
        batch['audio'][0, 100] = np.nan
      yield batch

  with pytest.raises(FloatingPointError, match=r'Loss is nan at step 10.*step 8'):
    train.train(tiny_config(), tmp_path, train_batches=batches, eval_batches=fake_eval_batches)
  assert checkpoints.manager(tmp_path).all_steps() == [8]


def test_batches_that_run_out(tmp_path):
  with pytest.raises(ValueError, match='ran out after step 3'):
    train.train(tiny_config(), tmp_path,
                train_batches=lambda start, multiple: itertools.islice(
                    fake_train_batches(start, multiple), 3))


def test_max_minutes_stops_with_a_checkpoint(tmp_path, monkeypatch):
  class Clock:  # Every reading is ten minutes later: each step takes ten minutes.
    now = 0.0

    def perf_counter(self):
      Clock.now += 600.0
      return Clock.now

  monkeypatch.setattr(train, 'time', Clock())
  config = tiny_config()
  assert config.train.max_minutes == 60
  state = train.train(config, tmp_path, train_batches=fake_train_batches,
                      eval_batches=fake_eval_batches)
  assert int(state.step) == 6
  assert checkpoints.manager(tmp_path).all_steps() == [6]
  assert [l['step'] for l in read_metrics(tmp_path) if 'ler' in l] == [6]
  # A rerun has no time left: it restores and stops at once.
  again = train.train(config, tmp_path, train_batches=fake_train_batches,
                      eval_batches=fake_eval_batches)
  assert int(again.step) == 6
  assert_trees_equal(again.params, state.params)


def test_resuming_with_another_model_names_both_values(reference_run):
  workdir, _ = reference_run
  config = tiny_config()
  config.model.channels = 12
  with pytest.raises(ValueError, match=r'model.channels=8 in the checkpoint but 12 in the config'):
    train.train(config, workdir, train_batches=fake_train_batches)
  # The workdir still describes its checkpoints.
  assert checkpoints.read_config(workdir).model.channels == 8


def test_train_script_rejects_out_of_range_flags(tmp_path):
  done = subprocess.run(
      [sys.executable, 'experiments/train.py', '--config=navai_jax/configs/default.py:tiny',
       f'--workdir={tmp_path}', '--config.train.max_minutes=-1'],
      cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)}, capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 1
  assert 'config.train.max_minutes must be >= 0' in done.stderr
  assert 'Traceback' not in done.stderr


def _numbered_batch(i: int) -> dict[str, np.ndarray]:
  return {'audio': np.full((4, 3), i, np.float32), 'audio_lengths': np.full(4, 3, np.int32),
          'labels': np.full((4, 2), i, np.int32), 'label_paddings': np.zeros((4, 2), np.float32),
          'weights': np.ones(4, np.float32)}


def _prefetch_threads_alive() -> bool:
  for _ in range(50):
    if not any(t.name == 'prefetch' and t.is_alive() for t in threading.enumerate()):
      return False
    time.sleep(0.05)
  return True


def test_prefetch_keeps_order_and_raises_where_the_error_was():
  mesh = parallel.make_mesh()  # Four forced CPU devices.

  def batches():
    yield from (_numbered_batch(i) for i in range(5))
    raise ValueError('batch 5 is broken')

  got = []
  with pytest.raises(ValueError, match='batch 5 is broken'):
    for batch, device_batch in parallel.prefetch(batches(), mesh, size=2):
      assert device_batch['audio'].sharding.is_equivalent_to(parallel.batch_sharded(mesh), 2)
      for k in parallel.ARRAY_FIELDS:
        np.testing.assert_array_equal(np.asarray(device_batch[k]), batch[k])
      got.append(int(batch['audio'][0, 0]))
  assert got == [0, 1, 2, 3, 4]
  assert not _prefetch_threads_alive()


def test_prefetch_thread_ends_when_the_consumer_stops():
  endless = parallel.prefetch((_numbered_batch(i) for i in itertools.count()),
                              parallel.make_mesh(), size=3)
  assert [int(b['labels'][0, 0]) for b, _ in itertools.islice(endless, 4)] == [0, 1, 2, 3]
  endless.close()
  assert not _prefetch_threads_alive()
  with pytest.raises(ValueError, match='size must be >= 1'):
    next(parallel.prefetch(iter([]), parallel.make_mesh(), size=0))
