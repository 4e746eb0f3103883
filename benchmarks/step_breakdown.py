"""Where the time of one training step goes: features, network and the CTC apart.

  python benchmarks/step_breakdown.py --preset=paper --steps=20 --repeats=3 \
      --ctc_unrolls=1,2,4,8,16 --compare_torch --torch_device=cuda

On the made-up batch of `train_benchmark.py` (the preset's `data.batch_seconds` of
`--utterance_seconds` utterances) it times, each jitted and on its own:
  ctc optax, ctc forward_backward/U
                the CTC loss and its gradient on logits of the step's shape: `optax.ctc_loss`,
                and `navai_jax.recognizer.ctc.ctc_loss` at each unroll factor U of `--ctc_unrolls`;
  step optax, step forward_backward/U
                the whole training step (`train.train_step`) with either CTC, U the fastest;
  step without CTC
                the step with the CTC replaced by a loss that costs nothing (the mean
                log-probability of the blank over the real output positions);
  features      `features.log_mel` of the batch;
  ctc PyTorch   with `--compare_torch`: `torch.nn.functional.ctc_loss` forward and backward on
                the same logits and labels, on `--torch_device`.
Each runs once to warm up, then `--steps` times; the fastest of `--repeats` runs counts.
`--xla_option NAME=VALUE` (repeatable) compiles every part with that XLA option.

On one NVIDIA H200 (JAX 0.11.2, PyTorch 2.11.0+cu130), the command above gave for `paper`
(40 x 4 s, logits 40x249x31, 60 labels per utterance), in ms: ctc optax 7.13; forward_backward
2.48 (unroll 1), 1.59 (2), 1.11 (4), 0.88 (8), 0.82 (16); PyTorch 0.80; step optax 17.54,
step forward_backward/16 11.18, step without CTC 10.43; features 1.01. On 2 CPU cores (`small`,
10 x 4 s): ctc optax 4.6, forward_backward 3.0 (unroll 1) and 9.7 (2), PyTorch 7.0; the steps
130 ms with either CTC.
"""

import functools
import time
from typing import Any, Callable
from unittest import mock

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.training import parallel
from navai_jax.recognizer import ctc
from navai_jax.training import train
from navai_jax.recognizer import vocab
import train_benchmark

# --preset, --steps, --repeats, --utterance_seconds, --batch_seconds, --compare_torch,
# --torch_device and --xla_option are train_benchmark.py's flags (imported with it); its --ctc
# and --ctc_unroll have no effect here, where every CTC variant is timed.
FLAGS = flags.FLAGS
_UNROLLS = flags.DEFINE_list('ctc_unrolls', ['1', '2', '4', '8'],
                            "Unroll factors of the 'forward_backward' CTC to time.")
flags.register_validator('ctc_unrolls',
                         lambda unrolls: all(u.isdigit() and int(u) >= 1 for u in unrolls),
                         '--ctc_unrolls must be integers >= 1.')


def blank_loss(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL, weights_B,
               *unused_implementation_and_unroll):
  """A loss of the CTC's inputs that costs nothing beside it: mean blank log-probability."""
  del labels_BxL, label_paddings_BxL
  blank_BxU = jax.nn.log_softmax(logits_BxUxV)[..., vocab.BLANK]
  real_BxU = weights_B[:, None] * (1.0 - logit_paddings_BxU)
  return -jnp.sum(real_BxU * blank_BxU) / jnp.maximum(jnp.sum(real_BxU), 1.0)


def fastest_seconds(run: Callable[[], Any], steps: int, repeats: int,
                    wait: Callable[[Any], Any] = jax.block_until_ready) -> float:
  """Seconds per call of `run`, the fastest of `repeats` runs; `wait(out)` waits for `out`."""
  wait(run())
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      out = run()
    wait(out)
    best = min(best, (time.perf_counter() - start) / steps)
  return best


def main(argv):
  del argv
  config = train_benchmark.config_from_flags()
  frozen = ml_collections.FrozenConfigDict(config)
  options = train_benchmark.xla_options()
  compile_ = lambda fn, *args: fn.lower(*args).compile(compiler_options=options or None)

  mesh = parallel.make_mesh()
  batch = train_benchmark.made_up_batch(config, FLAGS.utterance_seconds, mesh.size)
  device_batch = parallel.shard_batch(batch, mesh)
  state = train.jit_init_state(frozen, mesh)()
  time_it = lambda run, **kw: fastest_seconds(run, FLAGS.steps, FLAGS.repeats, **kw)
  seconds: dict[str, float] = {}

  log_mel = compile_(jax.jit(features.log_mel, static_argnums=2), batch['audio'],
                     batch['audio_lengths'], frozen)
  x_BxTxF, frames_B = log_mel(batch['audio'], batch['audio_lengths'])
  output_lengths_B = model.output_length(model.layer_specs(config.model), frames_B)
  logits_BxUxV, _ = jax.jit(lambda x: model.Wav2Letter(config.model).apply(
      state.variables, x, train=False))(x_BxTxF)
  ctc_args = (logits_BxUxV, ctc.logit_paddings(output_lengths_B, logits_BxUxV.shape[1]),
              batch['labels'], batch['label_paddings'], batch['weights'])
  unrolls = [int(u) for u in _UNROLLS.value]
  variants = [('optax', 1)] + [('forward_backward', u) for u in unrolls]
  name_of = lambda impl, unroll: 'optax' if impl == 'optax' else f'forward_backward/{unroll}'
  for impl, unroll in variants:
    loss = functools.partial(ctc.batch_loss, implementation=impl, unroll=unroll)
    loss_and_grad = compile_(jax.jit(jax.value_and_grad(loss)), *ctc_args)
    seconds[f'ctc {name_of(impl, unroll)}'] = time_it(lambda: loss_and_grad(*ctc_args))
  best_unroll = min(unrolls, key=lambda u: seconds[f'ctc forward_backward/{u}'])

  for impl, unroll in [('optax', 1), ('forward_backward', best_unroll)]:
    config.train.ctc, config.train.ctc_unroll = impl, unroll
    step = compile_(jax.jit(functools.partial(train.train_step,
                                              ml_collections.FrozenConfigDict(config))),
                    state, device_batch)
    seconds[f'step {name_of(impl, unroll)}'] = time_it(lambda: step(state, device_batch))
  with mock.patch.object(ctc, 'batch_loss', blank_loss):
    no_ctc = compile_(jax.jit(functools.partial(train.train_step, frozen)), state,
                      device_batch)
  seconds['step without CTC'] = time_it(lambda: no_ctc(state, device_batch))
  seconds['features'] = time_it(lambda: log_mel(batch['audio'], batch['audio_lengths']))

  if FLAGS.compare_torch:
    import torch
    device = FLAGS.torch_device
    logits = torch.from_numpy(np.array(logits_BxUxV)).to(device).requires_grad_()
    labels = torch.from_numpy(batch['labels']).long().to(device)
    label_lengths = torch.from_numpy(np.sum(1.0 - batch['label_paddings'], 1)).long().to(device)
    output_lengths = torch.from_numpy(np.asarray(output_lengths_B)).long().to(device)

    def torch_ctc():
      log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)
      loss = torch.nn.functional.ctc_loss(log_probs, labels, output_lengths, label_lengths,
                                          blank=vocab.BLANK, reduction='sum')
      (grad,) = torch.autograd.grad(loss, logits)
      return grad

    wait = lambda _: torch.cuda.synchronize() if device == 'cuda' else None
    seconds['ctc PyTorch'] = time_it(torch_ctc, wait=wait)

  B, U, V = logits_BxUxV.shape
  print(f'{FLAGS.preset}: {B} x {FLAGS.utterance_seconds:g} s per batch, logits {B}x{U}x{V}, '
        f'labels {batch["labels"].shape[1]} per utterance, on {jax.devices()[0].device_kind}'
        + (f'; XLA options {options}' if options else ''))
  for name, value in seconds.items():
    print(f'  {name:28s} {value * 1e3:8.2f} ms')
  for impl, unroll in [('optax', 1), ('forward_backward', best_unroll)]:
    inside = seconds[f'step {name_of(impl, unroll)}'] - seconds['step without CTC']
    print(f'the CTC inside the step, {name_of(impl, unroll)}: {inside * 1e3:.2f} ms')
  print(f'fastest unroll: {best_unroll}')


if __name__ == '__main__':
  app.run(main)
