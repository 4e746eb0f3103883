"""Training throughput in audio-seconds per second of the jitted train step.

  python benchmarks/train_benchmark.py --preset=small --steps=5
  python benchmarks/train_benchmark.py --preset=paper --steps=3 --repeats=2 --compare_torch \
      --torch_compile
  python benchmarks/train_benchmark.py --preset=paper --ctc=optax   # optax.ctc_loss instead

Times the step that `navai_jax.training.train.train` runs (features, augmentation, masked batch norm,
CTC, AdamW) on one made-up batch of the preset's `data.batch_seconds` of audio: utterances of
`--utterance_seconds` of noise with random transcripts of 15 letters per second (a step's
cost does not depend on what the audio says). The step is compiled ahead of time, so compile
time is reported on its own; it runs once to warm up, then `--steps` steps are timed and the
fastest of `--repeats` timed runs counts (the machine may be shared). Uses every local device,
as training does.

`--compare_torch` times an equivalent PyTorch training step in the same run, on the same batch,
with the same warm-up and timed steps (the repeats take turns): our log-mel features and
augmentation ported to torch, the port of the network in `torch_wav2letter.py` (starting from
our initial weights) in train mode, `torch.nn.functional.ctc_loss` with blank 0 and the same
per-token normalization, global norm clipping, AdamW with weight decay on the kernels only and
our learning rate schedule. BatchNorm1d takes its statistics over all frames; every utterance of
the made-up batch has the same length, so there are no padded frames and these are exactly our
masked statistics. Without augmentation (`paper`) both steps start from the same loss, printed
as a check that they compute the same thing. `--torch_compile` also times the network under
`torch.compile` (features and loss stay eager; needs a C++ compiler); the ratio is taken
against the faster PyTorch step. PyTorch (the CPU build of benchmarks/requirements.txt) runs on
one thread per core unless `--torch_threads` says otherwise: its OpenMP threads slow down
several times over when other jobs share the cores, where one thread is faster.

Measured with torch 2.13.0 on 2 CPU cores shared with other jobs (load 3-7; ratios of one run
only), ours / fastest PyTorch: `paper` 0.78x, 1.04x, 1.29x in three runs on 2 threads, 1.00x and
1.04x on 1 thread, 1.54x and 1.57x with --batch_seconds=40 on 2 threads; `small` 3.1x and 5.2x
on 2 threads, 0.91x and 0.97x on 1 thread. For `paper` the convolutions dominate and both sides
are about equally fast; the load on the shared cores moves single runs by ±25%. These CPU runs
used `optax.ctc_loss`, which on a CPU costs about what the default CTC costs (a few ms of a
`small` step's 130). With the default CTC, on the 2 cores with nothing else running: `paper`
8.62 s per step, PyTorch eager 9.71 s, compiled 8.93 s: 1.03x (eager 1.13x).

On one NVIDIA H200 (JAX 0.11.2 with CUDA 13, PyTorch 2.11.0+cu130, TF32 allowed on both sides):

  python benchmarks/train_benchmark.py --preset=paper --steps=10 --repeats=3 --compare_torch \
      --torch_compile --torch_device=cuda

gave ours 14,037 audio-seconds per second (11.4 ms per step, the forward-backward CTC at
unroll 16), PyTorch eager 11,417 and compiled 11,544: ours / fastest PyTorch 1.22x (eager
1.23x), with the same first-step loss (11.0864 / 11.0865). With `--ctc=optax` ours ran at
8,910 (0.80x): `optax.ctc_loss` and its gradient took 7.1 of that step's 17.5 ms
(`step_breakdown.py`). XLA's command buffers did not change that: with WHILE and CONDITIONAL
added (`--xla_option=xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,
DYNAMIC_SLICE_FUSION,WHILE,CONDITIONAL`) the optax step took 18.8 ms, with none 43.6 ms, with
`xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_FULL_UNROLL` 24.9 ms.
"""

import os
import time
from typing import Any, Callable

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from navai_jax.recognizer import ctc
from navai_jax.recognizer import model
from navai_jax.training import parallel
from navai_jax.training import train
from navai_jax.recognizer import vocab
from navai_jax.configs import default

_PRESET = flags.DEFINE_enum('preset', 'small', list(default.PRESETS), 'Config preset.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per run.')
_REPEATS = flags.DEFINE_integer('repeats', 1, 'Timed runs; the fastest counts.')
_UTTERANCE_SECONDS = flags.DEFINE_float('utterance_seconds', 4.0,
                                        'Length of every utterance of the batch.')
_BATCH_SECONDS = flags.DEFINE_float('batch_seconds', None,
                                    'Audio per batch; default the preset\'s data.batch_seconds.')
_COMPARE_TORCH = flags.DEFINE_bool('compare_torch', False,
                                   'Also time an equivalent PyTorch training step.')
_TORCH_COMPILE = flags.DEFINE_bool('torch_compile', False,
                                   'With --compare_torch: also time it with torch.compile.')
_TORCH_DEVICE = flags.DEFINE_string(
    'torch_device', 'cpu', "With --compare_torch: PyTorch's device, 'cpu' or 'cuda' (on a GPU "
    'machine, where JAX runs on the GPU too). On CUDA, TF32 is allowed in matrix products and '
    "convolutions, as XLA's default precision allows it for JAX.")
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', 0, 'Threads of PyTorch; 0 = one per CPU core (os.cpu_count()). On a '
    'machine shared with other jobs, fewer threads than cores can be faster.')

for _name in ('steps', 'repeats'):
  flags.register_validator(_name, lambda v: v >= 1, f'--{_name} must be >= 1.')
flags.register_validator('utterance_seconds', lambda s: s >= 2.0,
                         '--utterance_seconds must be >= 2 (one receptive field is 1.7 s).')
flags.register_validator('torch_device', lambda d: d in ('cpu', 'cuda'),
                         "--torch_device must be 'cpu' or 'cuda'.")
flags.register_validator('torch_threads', lambda n: n >= 0, '--torch_threads must be >= 0.')
_CTC = flags.DEFINE_enum('ctc', None, list(train.CTC_IMPLEMENTATIONS),
                         "Our CTC implementation; default the preset's config.train.ctc.")
_CTC_UNROLL = flags.DEFINE_integer('ctc_unroll', None,
                                   "Default the preset's config.train.ctc_unroll.")
_XLA_OPTIONS = flags.DEFINE_multi_string(
    'xla_option', [], 'NAME=VALUE: an XLA option our step is compiled with (repeatable), as '
    "`compile(compiler_options=...)` takes it, e.g. 'xla_gpu_autotune_level=4'.")
flags.register_validator('xla_option', lambda options: all('=' in o for o in options),
                         '--xla_option must be NAME=VALUE.')
flags.register_validator('ctc_unroll', lambda u: u is None or u >= 0,
                         '--ctc_unroll must be >= 0 (0 = by platform).')
flags.register_validator('batch_seconds', lambda s: s is None or s > 0,
                         '--batch_seconds must be > 0.')


def made_up_batch(config: ml_collections.ConfigDict, utterance_seconds: float,
                  batch_multiple: int) -> dict[str, np.ndarray]:
  """About `config.data.batch_seconds` of noise, with random letter transcripts."""
  rate = config.features.sample_rate
  size = max(1, int(config.data.batch_seconds // utterance_seconds))
  size = -(-size // batch_multiple) * batch_multiple
  samples = int(utterance_seconds * rate)
  width = int(15 * utterance_seconds)
  rng = np.random.default_rng(0)
  return {
      'audio': rng.uniform(-0.5, 0.5, (size, samples)).astype(np.float32),
      'audio_lengths': np.full(size, samples, np.int32),
      'labels': rng.choice(np.asarray(vocab.LETTER_IDS), (size, width)).astype(np.int32),
      'label_paddings': np.zeros((size, width), np.float32),
      'weights': np.ones(size, np.float32),
  }


def xla_options() -> dict[str, str]:
  """`--xla_option` as a dict."""
  return dict(option.split('=', 1) for option in _XLA_OPTIONS.value)


def torch_train_step(config: ml_collections.ConfigDict, variables: Any,
                     batch: dict[str, np.ndarray], num_steps: int, compile_network: bool,
                     device: str = 'cpu') -> Callable[[], float]:
  """The PyTorch counterpart of `train.train_step` on `batch` (see the module docstring).

  Args:
    config: the experiment config.
    variables: initial `{'params', 'batch_stats'}` of our model, copied into the network.
    batch: the made-up batch (every utterance of the same length).
    num_steps: steps that will be run (the learning rates are computed ahead).
    compile_network: run the network under `torch.compile`.
    device: the torch device of the network, the batch and the random numbers.
  Returns:
    `step()`, which runs the next optimizer step and returns its loss (a 0-d tensor).
  """
  # PyTorch is optional (benchmarks/requirements.txt): imported only for --compare_torch.
  import torch
  import torch_wav2letter

  t = config.train
  net = torch_wav2letter.wav2letter(config, variables).train().to(device)
  kernels = [m.weight for m in net if isinstance(m, torch.nn.Conv1d)]
  others = [p for p in net.parameters() if all(p is not k for k in kernels)]
  optimizer = torch.optim.AdamW([{'params': kernels, 'weight_decay': t.weight_decay},
                                 {'params': others, 'weight_decay': 0.0}], lr=0.0, eps=1e-8)
  rates = np.asarray(jax.vmap(train.learning_rate_schedule(t))(np.arange(num_steps))).tolist()
  forward = torch.compile(net) if compile_network else net
  audio = torch.from_numpy(batch['audio']).to(device)
  lengths = torch.from_numpy(batch['audio_lengths']).long().to(device)
  labels = torch.from_numpy(batch['labels']).long().to(device)
  label_lengths = torch.from_numpy(np.sum(1.0 - batch['label_paddings'], 1)).long().to(device)
  weights = torch.from_numpy(batch['weights']).to(device)
  tokens = torch.clamp(torch.sum(weights * label_lengths), min=1.0)
  generator = torch.Generator(device=device).manual_seed(config.seed)
  specs = model.layer_specs(config.model)
  step_number = iter(range(num_steps))

  def step() -> float:
    i = next(step_number)
    x_BxTxF, frames_B = torch_wav2letter.log_mel(audio, lengths, config)
    if config.augment.enabled:
      x_BxTxF = torch_wav2letter.augment(x_BxTxF, frames_B, generator, config.augment)
    logits_BxVxU = forward(x_BxTxF.transpose(1, 2))
    log_probs_UxBxV = torch.log_softmax(logits_BxVxU, dim=1).permute(2, 0, 1)
    per_utterance_B = torch.nn.functional.ctc_loss(
        log_probs_UxBxV, labels, model.output_length(specs, frames_B), label_lengths, blank=0,
        reduction='none')
    loss = torch.sum(weights * per_utterance_B) / tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip:
      torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
    for group in optimizer.param_groups:
      group['lr'] = rates[i]
    optimizer.step()
    return loss.detach()  # No .item() here: a CUDA step then queues like a jitted JAX step.

  return step


def config_from_flags() -> ml_collections.ConfigDict:
  """The preset's config with --batch_seconds, --ctc and --ctc_unroll where they are given."""
  config = default.get_config(_PRESET.value)
  if _BATCH_SECONDS.value is not None:
    config.data.batch_seconds = _BATCH_SECONDS.value
  if _CTC.value is not None:
    config.train.ctc = _CTC.value
  if _CTC_UNROLL.value is not None:
    config.train.ctc_unroll = _CTC_UNROLL.value
  return config


def main(argv):
  del argv
  config = config_from_flags()
  frozen = ml_collections.FrozenConfigDict(config)
  mesh = parallel.make_mesh()
  batch = made_up_batch(config, _UTTERANCE_SECONDS.value, mesh.size)
  audio_seconds = batch['audio_lengths'].sum() / config.features.sample_rate
  device_batch = parallel.shard_batch(batch, mesh)
  state = train.jit_init_state(frozen, mesh)()
  initial_variables = jax.tree.map(np.asarray, state.variables)  # The step donates `state`.

  start = time.perf_counter()
  step = train.jit_train_step(frozen, mesh).lower(state, device_batch).compile(
      compiler_options=xla_options() or None)
  compile_seconds = time.perf_counter() - start

  def run_ours(num_steps: int) -> float:
    nonlocal state
    for _ in range(num_steps):
      state, metrics = step(state, device_batch)
    return float(metrics['loss'])

  # name -> (run `n` steps and return the last loss, warm-up seconds, warm-up loss).
  runs: dict[str, tuple[Callable[[int], float], float, float]] = {}
  torch_names = []
  if _COMPARE_TORCH.value:
    import torch
    torch.set_num_threads(_TORCH_THREADS.value or os.cpu_count())
    if _TORCH_DEVICE.value == 'cuda':
      torch.backends.cuda.matmul.allow_tf32 = True
      torch.backends.cudnn.allow_tf32 = True
      torch.backends.cudnn.benchmark = True  # Picks the fastest convolution algorithm.
    torch_names = ['eager', 'compiled'] if _TORCH_COMPILE.value else ['eager']
  for name in ['ours'] + torch_names:
    if name == 'ours':
      run = run_ours
    else:
      torch_step = torch_train_step(config, initial_variables, batch,
                                    1 + _REPEATS.value * _STEPS.value, name == 'compiled',
                                    _TORCH_DEVICE.value)
      run = lambda n, torch_step=torch_step: float([torch_step() for _ in range(n)][-1])
    start = time.perf_counter()
    loss = run(1)
    runs[name] = (run, time.perf_counter() - start, loss)

  # Repeats take turns, so that a load on the shared machine slows every contender alike.
  seconds = {name: float('inf') for name in runs}
  for _ in range(_REPEATS.value):
    for name, (run, _, _) in runs.items():
      start = time.perf_counter()
      run(_STEPS.value)
      seconds[name] = min(seconds[name], (time.perf_counter() - start) / _STEPS.value)

  ours = seconds['ours']
  unroll = config.train.ctc_unroll or ctc.default_unroll()
  ctc_name = 'optax' if config.train.ctc == 'optax' else f'forward_backward, unroll {unroll}'
  print(f'{_PRESET.value}: {len(batch["weights"])} x {_UTTERANCE_SECONDS.value:g} s per batch, '
        f'CTC {ctc_name}, on {mesh.size} {jax.devices()[0].device_kind} device(s); '
        f'compile {compile_seconds:.1f} s; '
        f'{ours * 1e3:.1f} ms per step = {audio_seconds / ours:.0f} audio-seconds per second'
        + (f'; XLA options {xla_options()}' if _XLA_OPTIONS.value else ''))
  if not torch_names:
    return
  where = (torch.cuda.get_device_name() if _TORCH_DEVICE.value == 'cuda'
           else f'{torch.get_num_threads()} threads')
  print(f'PyTorch {torch.__version__} on {where}, the same batch, 1 '
        f'warm-up step and the fastest of {_REPEATS.value} x {_STEPS.value} steps; loss of the '
        f'first step: ours {runs["ours"][2]:.4f}')
  for name in torch_names:
    _, warm_up_seconds, loss = runs[name]
    print(f'  PyTorch {name:8s} first step {warm_up_seconds:5.1f} s, loss {loss:.4f}; '
          f'{seconds[name] * 1e3:.1f} ms per step = {audio_seconds / seconds[name]:.0f} '
          f'audio-seconds per second; ours / PyTorch {seconds[name] / ours:.2f}x')
  fastest = min(torch_names, key=seconds.get)
  print(f'ours / fastest PyTorch ({fastest}): {seconds[fastest] / ours:.2f}x (target >= 1.0x)')


if __name__ == '__main__':
  app.run(main)
