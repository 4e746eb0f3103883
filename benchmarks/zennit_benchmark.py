"""Our LRP-epsilon against zennit's on the same network in PyTorch.

  pip install -r benchmarks/requirements.txt
  python benchmarks/zennit_benchmark.py --config=paper --frames=16

Runs the Wav2Letter of a preset in PyTorch (the port in `torch_wav2letter.py`: Conv1d,
BatchNorm1d in eval mode, ReLU) with identical weights (random with drawn batch statistics, or a
trained run's with `--workdir`), checks that both give the same logits, then explains the
predicted class of `--frames` random windows with zennit's Epsilon rule behind its
SequentialMergeBatchNorm canonizer and with our `epsilon` rule (batch norm folded the same way;
both start from the target logit). Prints the relative error of the relevance maps and the
frames per second of both, measured in the same run on the same inputs (compile time apart;
median of `--repeats` calls).
"""

import importlib.metadata
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from navai_jax.training import checkpoints
from navai_jax.introspection import lrp
from navai_jax.recognizer import model
from navai_jax.configs import default
import common
import torch_wav2letter

_CONFIG = flags.DEFINE_enum('config', 'paper', default.PRESETS, 'Model preset (no --workdir).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained run whose weights to use.')
_FRAMES = flags.DEFINE_integer('frames', 16, 'Windows per batch.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Steady-state calls; the median is reported.')
_EPSILON = flags.DEFINE_float('epsilon', 1e-6, 'Epsilon of the rule (zennit\'s default).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of weights and inputs.')


def main(argv):
  del argv
  import torch
  common.import_zennit()
  from zennit.attribution import Gradient
  from zennit.canonizers import SequentialMergeBatchNorm
  from zennit.composites import LayerMapComposite
  from zennit.rules import Epsilon

  if _WORKDIR.value:
    config, variables, _ = checkpoints.load_for_inference(_WORKDIR.value)
  else:
    config = default.get_config(_CONFIG.value)
    variables = common.random_variables(config, jax.random.key(_SEED.value), _SEED.value)
  net = torch_wav2letter.wav2letter(config, variables, padding='VALID')
  n = _FRAMES.value
  windows = jax.random.normal(jax.random.key(_SEED.value + 1),
                              (n, model.RECEPTIVE_FIELD, config.features.num_mels))
  x_torch = torch.from_numpy(np.asarray(windows).transpose(0, 2, 1).copy())
  print(f'Command: python {" ".join(sys.argv)}')
  print(f'torch {torch.__version__} ({torch.get_num_threads()} threads), zennit '
        f'{importlib.metadata.version("zennit")}, jax {jax.__version__} on '
        f'{jax.devices()[0].device_kind}; preset {config.preset}, {n} windows, '
        f'epsilon {_EPSILON.value:g}')

  logits, _ = model.apply_inference(config, variables, windows, padding='VALID')
  with torch.no_grad():
    logits_torch = net(x_torch).numpy().transpose(0, 2, 1)
  forward_error = float(np.max(np.abs(logits_torch - logits)) / np.max(np.abs(logits)))
  targets = np.array(jnp.argmax(logits[:, 0], -1), np.int64)
  print(f'Forward pass, max |torch - jax| / max |jax| of the logits: {forward_error:.1e}')

  one_hot = torch.nn.functional.one_hot(torch.from_numpy(targets), logits.shape[-1])
  one_hot = one_hot.to(torch.float32)[:, :, None]
  composite = LayerMapComposite(layer_map=[(torch.nn.Conv1d, Epsilon(epsilon=_EPSILON.value))],
                                canonizers=[SequentialMergeBatchNorm()])

  def zennit_lrp():
    with Gradient(model=net, composite=composite) as attributor:
      _, relevance = attributor(x_torch.clone().requires_grad_(True),
                                lambda output: one_hot * output)
    return relevance.numpy().transpose(0, 2, 1)

  def our_lrp():
    return np.asarray(jax.block_until_ready(lrp.lrp_batch(
        config, variables, windows, targets, rule='epsilon', epsilon=_EPSILON.value)))

  theirs, theirs_first, theirs_s = common.timed_median(zennit_lrp, _REPEATS.value)
  ours, ours_first, ours_s = common.timed_median(our_lrp, _REPEATS.value)
  print('Relevance maps, ours against zennit (target <= 1e-4):')
  print(f'  float32: {common.errors(ours, theirs)}')

  # The same comparison in float64 separates rounding from any difference of the rules.
  with jax.enable_x64(True):
    # A second copy: zennit's canonizer leaves `net` float32-only.
    net64 = torch_wav2letter.wav2letter(config, variables, padding='VALID').double()
    as64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    with Gradient(model=net64, composite=composite) as attributor:
      _, relevance = attributor(x_torch.double().requires_grad_(True),
                                lambda output: one_hot.double() * output)
    ours64 = lrp.lrp_batch(config, as64(variables), as64(windows), targets, rule='epsilon',
                           epsilon=_EPSILON.value)
    ours64, theirs64 = np.asarray(ours64), relevance.numpy().transpose(0, 2, 1)
  print(f'  float64: {common.errors(ours64, theirs64)}')
  print('Each toolbox in float32 against itself in float64 (the rounding both share):')
  print(f'  ours:   {common.errors(ours, ours64, ("f32", "f64"))}')
  print(f'  zennit: {common.errors(theirs, theirs64, ("f32", "f64"))}')
  print(f'  zennit  first call {theirs_first:6.2f} s   steady {n / theirs_s:8.1f} frames/s')
  print(f'  ours    first call {ours_first:6.2f} s (compile)   steady {n / ours_s:8.1f} '
        f'frames/s')
  print(f'  ours / zennit frames per second: {theirs_s / ours_s:.2f}x (target >= 2x)')


if __name__ == '__main__':
  app.run(main)
