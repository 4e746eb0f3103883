"""Test session set-up and the fixtures that several test files share.

Four forced CPU devices, so sharded code is tested against one device; programs compiled
without LLVM's expensive optimizations, in this process and every one it starts (a fifth of
the suite's time; each test compares computations compiled alike, or float64 with a
tolerance); one compilation cache for all of the session's processes. The shared fixtures
are builders (functions), so each test asks for the variant it needs:

* `tiny_variables(seed, dtype, letter_bias)`: the `tiny` model with batch statistics and
  affine batch-norm parameters that keep every layer alive;
* `random_layers(seed, batch_norm=, bias=)`: a small random `network.Layer` stack (receptive
  field `SMALL_FIELD` frames of `SMALL_BINS` bins);
* `quick(fn, *args)`: `jax.jit(fn)(*args)` compiled without LLVM optimization;
* `tones`: utterances whose letters are tones, as `data.batches` yields them, and a tiny
  training config that learns them.
"""

import atexit
import itertools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

# XLA flags of every process of the session: `xla_flags(devices)`.
QUICK_FLAGS = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'


def xla_flags(devices: int) -> str:
  return f'--xla_force_host_platform_device_count={devices} {QUICK_FLAGS}'


os.environ.setdefault('XLA_FLAGS', xla_flags(4))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# One compilation cache for the session: JAX's persistent cache in a new directory, made by the
# first process (the one that starts the xdist workers) and handed on through the environment,
# so the workers and the scripts the tests start load a program another process compiled
# instead of compiling it again. Removed when that process exits; a cache directory the caller
# set is used as it is.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix='navai_jax_tests_xla_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import soundfile as sf  # pylint: disable=g-import-not-at-top,wrong-import-position

from navai_jax.recognizer import model  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.recognizer import network  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.recognizer import vocab  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.training import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.training import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from navai_jax.training import train  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (kernel, stride, features) of a small network whose receptive field is 10 frames of 5 bins.
SMALL_NET = ((4, 2, 6), (3, 1, 6), (2, 1, 4))
SMALL_FIELD, SMALL_BINS = 10, 5


def _tiny_variables(seed=0, dtype=jnp.float64, letter_bias=False):
  """`tiny` config and variables; batch statistics and affine parameters drawn from `seed` so
  that inference-mode batch norm matters (seed 1: a varied mix of predicted letters on
  Gaussian input). `letter_bias`: an output bias of -5 against every non-letter token, so that
  most positions are predicted as (varied) letters."""
  config = default.get_config('tiny')
  with jax.enable_x64(False):  # The model initializes in float32.
    variables = model.init_variables(config, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  stats = dict(variables['batch_stats'])
  params = dict(variables['params'])
  for name in stats:
    d = stats[name]['mean'].shape
    stats[name] = {'mean': jnp.asarray(rng.normal(0, 0.3, d)),
                   'var': jnp.asarray(rng.uniform(0.5, 2.0, d))}
    params[name] = {'scale': jnp.asarray(rng.normal(1.0, 0.5, d)),
                    'bias': jnp.asarray(rng.normal(0, 0.3, d))}
  if letter_bias:
    is_letter = (jnp.arange(vocab.SIZE) >= vocab.LETTER_IDS[0]) & (
        jnp.arange(vocab.SIZE) <= vocab.LETTER_IDS[-1])
    params['conv_12'] = dict(params['conv_12'], bias=jnp.where(is_letter, 0.0, -5.0))
  variables = {'params': params, 'batch_stats': stats}
  return config, jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)


def _random_layers(seed, *, batch_norm, bias, net=SMALL_NET, bins=SMALL_BINS, dtype=jnp.float64):
  """Random layers; batch norm on every layer but the output one, biases on every layer."""
  rng = np.random.default_rng(seed)
  layers, c = [], bins
  for i, (k, stride, d) in enumerate(net):
    bn = None
    if batch_norm and i < len(net) - 1:
      bn = {'scale': rng.normal(size=d), 'bias': rng.normal(0, 0.5, d),
            'mean': rng.normal(0, 0.5, d), 'var': rng.uniform(0.5, 1.5, d)}
      bn = {n: jnp.asarray(v, dtype) for n, v in bn.items()}
    b = jnp.asarray(rng.normal(0, 0.3, d), dtype) if bias else None
    layers.append(network.Layer(jnp.asarray(rng.normal(0, 1 / np.sqrt(k * c), (k, c, d)), dtype),
                                b, bn, stride, 1e-5))
    c = d
  return tuple(layers)


# Tests run small arrays, so compile time, not run time, is what they wait for: their own jitted
# functions compile without LLVM optimization (same arithmetic, several times faster to build).
QUICK = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _quick(fn, *args):
  """`jax.jit(fn)(*args)`, compiled without LLVM optimization."""
  return jax.jit(fn).lower(*args).compile(compiler_options=QUICK)(*args)


@pytest.fixture(scope='session')
def tiny_variables():
  return _tiny_variables


_random_layers.field, _random_layers.bins = SMALL_FIELD, SMALL_BINS
# A float64 input window of the small network, drawn from `seed`.
_random_layers.input = lambda seed: jax.random.normal(jax.random.key(seed),
                                                      (SMALL_FIELD, SMALL_BINS), jnp.float64)


@pytest.fixture(scope='session')
def random_layers():
  return _random_layers


@pytest.fixture(scope='session')
def quick():
  return _quick


# Utterances made of tones, for training and evaluation tests.

RATE = 16000
TEXTS = ('cat', 'dog sat', 'bee', 'hello', 'a jazz cab', 'quiet fox')


def _tone_audio(text: str, letter_seconds: float = 0.08) -> np.ndarray:
  """Each character a tone at 150 + 110 * token id Hz; a space is silence."""
  n = int(letter_seconds * RATE)
  t = np.arange(n) / RATE
  parts = [np.zeros(n // 2)]
  for ch in text:
    pitch = 150 + 110 * vocab.TOKENS.index(ch)
    parts.append(np.zeros(n) if ch == ' ' else 0.5 * np.sin(2 * np.pi * pitch * t))
  parts.append(np.zeros(n // 2))
  return np.concatenate(parts).astype(np.float32)


NUM_SAMPLES = max(len(_tone_audio(t)) for t in TEXTS)
LABEL_WIDTH = max(len(vocab.encode(t)) for t in TEXTS)


def _make_batch(texts, weights=None, num_samples=NUM_SAMPLES, label_width=LABEL_WIDTH):
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
    audio, labels = _tone_audio(text), vocab.encode(text)
    batch['audio'][row, :len(audio)] = audio
    batch['audio_lengths'][row] = len(audio)
    batch['labels'][row, :len(labels)] = labels
    batch['label_paddings'][row, :len(labels)] = 0.0
  return batch


def _fake_train_batches(start_step, batch_multiple):
  """Batch s holds 4 of the texts, chosen by a generator seeded with s (as data.batches does)."""
  assert 4 % batch_multiple == 0
  for step in itertools.count(start_step):
    chosen = np.random.default_rng(step).choice(len(TEXTS), 4, replace=False)
    yield _make_batch([TEXTS[i] for i in chosen])


def _fake_eval_batches(batch_multiple):
  """All texts once, plus two filler rows of weight 0."""
  assert 8 % batch_multiple == 0
  return [_make_batch(list(TEXTS) + ['cat', 'cat'], weights=[1] * 6 + [0, 0])]


def _tiny_train_config():
  config = default.get_config('tiny')
  config.train.update({'learning_rate': 1e-2, 'num_steps': 32, 'log_every': 2,
                       'checkpoint_every': 8, 'eval_every': 16, 'max_minutes': 60.0,
                       'tensorboard': True})
  # Masks narrower than a tone, so the made-up transcripts stay learnable.
  config.augment.update({'time_masks': 1, 'time_mask_width': 4, 'freq_masks': 1,
                         'freq_mask_width': 8})
  return config


@pytest.fixture(scope='session')
def tones():
  return types.SimpleNamespace(
      texts=TEXTS, tone_audio=_tone_audio, make_batch=_make_batch,
      train_batches=_fake_train_batches, eval_batches=_fake_eval_batches,
      config=_tiny_train_config)


@pytest.fixture(scope='session')
def tones_run(tmp_path_factory, tones):
  """An uninterrupted training run of `tones.config()` (32 steps): (workdir, final state)."""
  workdir = tmp_path_factory.mktemp('tones_run')
  state = train.train(tones.config(), workdir, train_batches=tones.train_batches,
                      eval_batches=tones.eval_batches)
  return workdir, state


def _write_split(root, split, texts, audio=None, speaker=1, chapter=2, timings=False):
  """A LibriSpeech-layout split folder `root/split/SPEAKER/CHAPTER`: utterance i says
  `texts[i]` as tones (`audio(i, text)` for other audio), padded to 1.8 s (one receptive
  field). With `timings`, a `.timing.json` per utterance: its words one after another, each
  word's letters as phonemes of equal length. Returns the utterance ids."""
  folder = root / split / str(speaker) / str(chapter)
  folder.mkdir(parents=True, exist_ok=True)
  lines, ids = [], []
  for i, text in enumerate(texts):
    utt_id = f'{speaker}-{chapter}-{i:04d}'
    samples = _tone_audio(text) if audio is None else audio(i, text)
    padded = np.zeros(max(28800, len(samples)), np.float32)
    padded[:len(samples)] = samples
    sf.write(folder / f'{utt_id}.flac', padded, RATE, subtype='PCM_16')
    lines.append(f'{utt_id} {text.upper()}')
    ids.append(utt_id)
    if timings:
      duration, words, phonemes, t = len(padded) / RATE, [], [], 0.04
      for word in text.split():
        step = 0.08
        words.append({'word': word.upper(), 'start': t, 'end': t + step * len(word)})
        phonemes += [{'phoneme': c, 'start': t + k * step, 'end': t + (k + 1) * step}
                     for k, c in enumerate(word)]
        t += step * len(word) + 0.08
      (folder / f'{utt_id}.timing.json').write_text(json.dumps(
          {'id': utt_id, 'duration': duration, 'words': words, 'phonemes': phonemes}))
  (folder / f'{speaker}-{chapter}.trans.txt').write_text('\n'.join(lines) + '\n')
  return ids


@pytest.fixture(scope='session')
def write_split():
  return _write_split


# Noise utterances for the NAvAI pass and the layer profiles.

def _noise_batches(num_batches, rows=4, samples=30000, seed=0):
  """Batches of noise utterances as `data.batches(..., train=False)` yields them; the last row
  of batch 1 is a filler (weight 0). Utterance ids 1-1-BR (batch B, row R), index B * rows + R."""
  rng = np.random.default_rng(seed)
  out = []
  for b in range(num_batches):
    lengths = rng.integers(samples - 2500, samples + 1, size=rows).astype(np.int32)
    audio = rng.normal(size=(rows, samples)).astype(np.float32) * 0.1
    audio[np.arange(samples)[None] >= lengths[:, None]] = 0.0
    weights = np.ones(rows, np.float32)
    weights[-1] = float(b != 1)  # one filler row
    out.append({'audio': audio, 'audio_lengths': lengths, 'weights': weights,
                'id': np.array([f'1-1-{b:02d}{r}' for r in range(rows)]),
                'text': np.array(['x'] * rows), 'index': b * rows + np.arange(rows)})
  return out


@pytest.fixture(scope='session')
def noise_batches():
  """`noise_batches(num_batches, rows=4, samples=30000, seed=0)`: see `_noise_batches`."""
  return _noise_batches


@pytest.fixture
def timings(tmp_path):
  """Timing of one utterance (the first of every `noise_batches`): /a/ until 0.9 s, then /t/."""
  timing = {'id': '1-1-000', 'words': [{'word': 'X', 'start': 0.0, 'end': 5.0}], 'phonemes': [
      {'phoneme': "'a", 'start': 0.0, 'end': 0.9}, {'phoneme': 't', 'start': 0.9, 'end': 5.0}]}
  (tmp_path / 't.timing.json').write_text(json.dumps(timing))
  return {'1-1-000': str(tmp_path / 't.timing.json')}


# Several local processes of one script as hosts of `jax.distributed` (one device each).

def _start_hosts(command, logs, count=2):
  """`count` processes of `command + --multihost ...` on localhost, one CPU device each, their
  output in `logs/hostI.txt`."""
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  logs.mkdir(parents=True, exist_ok=True)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'PYTHONPATH': root,
         'XLA_FLAGS': xla_flags(1)}
  return [subprocess.Popen(command + ['--multihost', f'--coordinator_address=localhost:{port}',
                                      f'--num_processes={count}', f'--process_id={i}'],
                           cwd=root, env=env, stdout=open(logs / f'host{i}.txt', 'w'),
                           stderr=subprocess.STDOUT) for i in range(count)]


def _wait_for_hosts(hosts, logs):
  """Waits for every host (10 minutes at most); each must end with exit status 0."""
  for i, h in enumerate(hosts):
    try:
      h.wait(timeout=600)
    finally:
      h.kill()
    assert h.returncode == 0, (logs / f'host{i}.txt').read_text()[-3000:]


@pytest.fixture(scope='session')
def local_hosts():
  """`.start(command, logs)` and `.wait(hosts, logs)` for multi-process tests."""
  return types.SimpleNamespace(start=_start_hosts, wait=_wait_for_hosts)


# A run of the stages: the letter-biased `tiny` model on a noise corpus with true times.

@pytest.fixture(scope='session')
def stage_run(tmp_path_factory, tiny_variables, write_split):
  """The letter-biased `tiny` model on a dev split of noise with true letter times."""
  root = tmp_path_factory.mktemp('stages')
  rng = np.random.default_rng(0)
  texts = ['cat sat', 'a dog', 'bee', 'hello you']
  write_split(root / 'corpus', 'dev', texts, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  config, variables = tiny_variables(0, jnp.float32, letter_bias=True)
  config.data.source = f'folder:{root / "corpus"}'
  config.data.reader = 'direct'
  config.am.steps = 5
  config.navai.frame_batch = 8
  # Two alignments: the centre and LRP's, whose maps the concept shares come from (every
  # alignment's numbers: dataset_pass_test).
  config.navai.methods = ('none', 'lrp_max')
  config.navai.sonify_method = 'lrp_max'
  config.navai.sonify_iterations = 3
  config.navai.save_every = 1
  config.navai.figure_workers = 1  # drawn in the pass's process; navai_split_test spawns two
  config.attributions.max_frames = 8
  config.navai.layers = ()  # the layer profiles' own test profiles layers 1, 5, 11, 12
  config.navai.concept_layers = (6,)
  config.layer_clusters.dendrogram_layers = (1, 11)
  config.layer_clusters.figure_layer = 5
  config.layer_clusters.min_frames = 2
  config.layer_clusters.permutations = 20
  config.layer_clusters.top_channels = 2
  config.layer_clusters.letters = ('e',)
  config.layer_clusters.figure_phonemes = ('a', 't')
  return root, config, variables


def _saved_run(workdir, config, variables):
  """A training run folder holding `variables` as its step-3 checkpoint."""
  checkpoints.write_config(workdir, config)
  state = train.jit_init_state(ml_collections.FrozenConfigDict(config),
                               parallel.make_mesh(jax.devices()[:1]))()
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  mngr = checkpoints.manager(workdir)
  checkpoints.save(mngr, 3, state, {'elapsed_seconds': 1.0})
  mngr.wait_until_finished()


def _script(name, workdir, *args):
  """`experiments/NAME.py --workdir=WORKDIR ARGS...` in a subprocess, its output captured."""
  return subprocess.run([sys.executable, f'experiments/{name}.py', f'--workdir={workdir}',
                         *args], cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='session')
def saved_run():
  """`saved_run(workdir, config, variables)`: a training run folder holding `variables`."""
  return _saved_run


@pytest.fixture(scope='session')
def run_script():
  """`run_script(NAME, workdir, *args)`: experiments/NAME.py in a subprocess, output captured."""
  return _script


@pytest.fixture(scope='session')
def script_env():
  """`script_env(devices)`: the environment of a script a test starts, with `devices` CPU
  devices and the session's other XLA flags."""
  return lambda devices: {**os.environ, 'PYTHONPATH': str(ROOT), 'XLA_FLAGS': xla_flags(devices)}
