"""Our conditional maps (CRP) against zennit-crp's `CondAttribution` on the same network.

  pip install -r benchmarks/requirements.txt
  python benchmarks/crp_benchmark.py --config=small --frames=8 --layer=8 --channels=4

Runs the Wav2Letter of a preset in PyTorch (the port in `torch_wav2letter.py`) with identical
weights (random with drawn batch statistics, or a trained run's with `--workdir`), then, for
`--frames` random windows and their predicted letters, the conditional maps of the
`--channels` channels of `--layer` that carry the most relevance (one condition per frame and
channel): zennit-crp's `CondAttribution` with zennit's Epsilon rule behind its
SequentialMergeBatchNorm canonizer, masking the relevance at the layer's ReLU output
(`ChannelConcept`, the input's whole relevance kept, not summed over mel bins), and our
`concepts.conditional_maps` under `epsilon` (batch norm folded the same way, the same start
from the target logit). Prints the relative error of the maps (float32, and float64 to
separate rounding from the rule) and the maps per second of both, measured in the same run on
the same inputs (compile time apart; median of `--repeats` calls).
"""

import importlib.metadata
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from navai_jax.configs import default
from navai_jax.introspection import concepts
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.training import checkpoints
import common
import torch_wav2letter

_CONFIG = flags.DEFINE_enum('config', 'small', default.PRESETS, 'Model preset (no --workdir).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained run whose weights to use.')
_FRAMES = flags.DEFINE_integer('frames', 8, 'Windows.')
_LAYER = flags.DEFINE_integer('layer', 8, 'Layer whose channels are conditioned on.')
_CHANNELS = flags.DEFINE_integer('channels', 4, 'Channels per window (those of the most '
                                 'relevance).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Steady-state calls; the median is reported.')
_EPSILON = flags.DEFINE_float('epsilon', 1e-6, 'Epsilon of the rule (zennit\'s default).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of weights and inputs.')


def relu_name(net, layer: int) -> str:
  """The name of the module that outputs layer `layer` (its ReLU) in the PyTorch port."""
  relus = [name for name, m in net.named_modules() if type(m).__name__ == 'ReLU']
  return relus[layer - 1]


def main(argv):
  del argv
  import torch
  common.import_zennit()
  from crp.attribution import CondAttribution
  from zennit.canonizers import SequentialMergeBatchNorm
  from zennit.composites import LayerMapComposite
  from zennit.rules import Epsilon

  class FullMaps(CondAttribution):
    """CondAttribution returning the input's relevance as it is (not summed over dim 1)."""

    def heatmap_modifier(self, data, on_device=None):
      return data.grad.detach()

  if _WORKDIR.value:
    config, variables, _ = checkpoints.load_for_inference(_WORKDIR.value)
  else:
    config = default.get_config(_CONFIG.value)
    variables = common.random_variables(config, jax.random.key(_SEED.value), _SEED.value)
  layer, n, c = _LAYER.value, _FRAMES.value, _CHANNELS.value
  windows = jax.random.normal(jax.random.key(_SEED.value + 1),
                              (n, model.RECEPTIVE_FIELD, config.features.num_mels))
  logits, _ = model.apply_inference(config, variables, windows, padding='VALID')
  targets = np.array(jnp.argmax(logits[:, 0], -1), np.int64)
  layers = network.layers_from_variables(config, variables)
  width = layers[layer - 1].kernel_KxCxD.shape[-1]
  concepts.check_condition(layers, layer)
  # The channels that carry the most relevance of these frames (channel 0 may carry none).
  _, _, relevance_NxD = concepts.conditional_maps(
      layers, windows, jnp.asarray(targets), layer, concepts.channel_masks(jnp.arange(1), width),
      rule='epsilon', epsilon=_EPSILON.value, start='logit')
  channels = np.argsort(-np.abs(np.asarray(relevance_NxD)).sum(0), kind='stable')[:c]
  print(f'Command: python {" ".join(sys.argv)}')
  print(f'torch {torch.__version__} ({torch.get_num_threads()} threads), zennit-crp '
        f'{importlib.metadata.version("zennit-crp")}, jax {jax.__version__} on '
        f'{jax.devices()[0].device_kind}; preset {config.preset}, {n} windows x {c} channels '
        f'of layer {layer}, epsilon {_EPSILON.value:g}')

  composite = LayerMapComposite(layer_map=[(torch.nn.Conv1d, Epsilon(epsilon=_EPSILON.value))],
                                canonizers=[SequentialMergeBatchNorm()])

  def crp_maps(net, x, dtype):
    attribution = FullMaps(net)
    name = relu_name(net, layer)
    conditions = [{'y': [int(t)], name: [int(k)]} for t in targets for k in channels]
    data = x.to(dtype).repeat_interleave(c, dim=0).requires_grad_(True)  # one per condition
    found = attribution(data, conditions, composite)
    return found.heatmap.numpy().transpose(0, 2, 1).reshape(n, c, *windows.shape[1:])

  def our_maps(variables, windows):
    fn = jax.jit(lambda l, w, t: concepts.conditional_maps(
        l, w, t, layer, concepts.channel_masks(jnp.asarray(channels), width, w.dtype),
        rule='epsilon', epsilon=_EPSILON.value, start='logit')[0])
    l = network.layers_from_variables(config, variables)
    return lambda: np.asarray(jax.block_until_ready(fn(l, windows, jnp.asarray(targets))))

  x_torch = torch.from_numpy(np.asarray(windows).transpose(0, 2, 1).copy())
  net = torch_wav2letter.wav2letter(config, variables, padding='VALID')
  theirs, theirs_first, theirs_s = common.timed_median(
      lambda: crp_maps(net, x_torch, torch.float32), _REPEATS.value)
  ours, ours_first, ours_s = common.timed_median(our_maps(variables, windows), _REPEATS.value)
  flat = lambda m: m.reshape(n * c, *m.shape[2:])
  print('Conditional maps, ours against zennit-crp (target <= 1e-4):')
  print(f'  float32: {common.errors(flat(ours), flat(theirs), ("ours", "crp"))}')
  with jax.enable_x64(True):
    as64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    net64 = torch_wav2letter.wav2letter(config, variables, padding='VALID').double()
    theirs64 = crp_maps(net64, x_torch, torch.float64)
    ours64 = our_maps(as64(variables), as64(windows))()
  print(f'  float64: {common.errors(flat(ours64), flat(theirs64), ("ours", "crp"))}')
  print('Each toolbox in float32 against itself in float64 (the rounding both share):')
  print(f'  ours: {common.errors(flat(ours), flat(ours64), ("f32", "f64"))}')
  print(f'  crp:  {common.errors(flat(theirs), flat(theirs64), ("f32", "f64"))}')
  print(f'  crp  first call {theirs_first:6.2f} s   steady {n * c / theirs_s:8.1f} maps/s')
  print(f'  ours first call {ours_first:6.2f} s (compile)   steady {n * c / ours_s:8.1f} maps/s')
  print(f'  ours / zennit-crp maps per second: {theirs_s / ours_s:.2f}x')


if __name__ == '__main__':
  app.run(main)
