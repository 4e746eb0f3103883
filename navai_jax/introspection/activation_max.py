"""Activation maximization (AM) of single neurons, SPEC §7 and the paper's §3.2 / §4.1.

The input variable is one receptive window `x_TxF` = `[206, 128]`, run with VALID padding, so
layers 10-12 have exactly one output position. It starts from a Xavier (Glorot) uniform draw and
Adam climbs

    objective(x) = activation(x) - l1 * sum|x| - l2 * sum x**2
                   - tv_time * sum|x[t+1] - x[t]| - tv_freq * sum|x[:, f+1] - x[:, f]|

with batch norm in inference mode. The paper's setting is l1 = l2 = 0.001, Adam with learning
rate 0.05, 250 steps (the defaults of a config's `am` section); the total-variation weights and
the random time shifts ("jitter") are the Lucid regularizers, off by default.

The activation of a channel is its output averaged over the time positions of the layer
(80 positions in layer 1, 74 down to 32 in layers 2-9, one in layers 10-12), matching how §4.1
chooses lower-layer neurons by their time-averaged activation.

Where the activation is read (`objective_point`):
* 'bn' (default): the batch-norm output, just before the ReLU. Where the neuron fires this is the
  ReLU output itself, so the gradient is the same as for 'act'; where it does not, 'act' has an
  exactly zero gradient. From the small Xavier start a neuron that is silent on the whole window
  would never move under 'act' (only the penalties act, and they pull the input to zero); in the
  one-position layers 10 and 11 of an untrained `small` model about half the neurons are silent
  at their initialization. For time-averaged channels, 'bn' also lifts the silent positions.
* 'act': the ReLU output, the literal "activation" of the paper.
For the output layer both are the logit.

Every neuron gets its own keys, derived from (seed, layer, channel), so optimizing a set of
neurons in one vmapped run gives the same inputs as optimizing them one by one.
"""

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from navai_jax.recognizer import model
from navai_jax.core import rules
from navai_jax.recognizer import vocab

Array = jax.Array
PyTree = Any

OBJECTIVE_POINTS = ('bn', 'act')

RULES = {'am': [
    ('steps', *rules.at_least(1)), ('learning_rate', *rules.POSITIVE),
    ('l1', *rules.at_least(0)), ('l2', *rules.at_least(0)),
    ('tv_time', *rules.at_least(0)), ('tv_freq', *rules.at_least(0)),
    ('jitter', lambda v: 0 <= v < model.RECEPTIVE_FIELD,
     f'in [0, {model.RECEPTIVE_FIELD}) frames'),
    ('objective_point', *rules.one_of(OBJECTIVE_POINTS)),
    ('seed', *rules.at_least(0)),
]}


class AMResult(NamedTuple):
  """Result of one AM run (with a leading neuron axis N when several neurons ran at once).

  `objective_I` and `activation_I` are recorded before each of the I updates, so entry 0 belongs
  to the initialization; `activation_I` is the neuron's time-averaged activation alone.
  """
  input_TxF: Array
  initial_TxF: Array
  objective_I: Array
  activation_I: Array


def _check_layer(specs: tuple[model.LayerSpec, ...], layer: int) -> model.LayerSpec:
  if not 1 <= layer <= len(specs):
    raise ValueError(f'layer must be in 1..{len(specs)}, got {layer}.')
  return specs[layer - 1]


def _check_channels(spec: model.LayerSpec, channels) -> np.ndarray:
  channels = np.asarray(channels)
  if channels.ndim > 1 or not np.issubdtype(channels.dtype, np.integer):
    raise ValueError(f'channels must be an integer or a 1-D integer array, got dtype '
                     f'{channels.dtype} and shape {channels.shape}.')
  bad = channels[(channels < 0) | (channels >= spec.features)]
  if bad.size:
    raise ValueError(f'channels {bad.tolist()} out of range for layer {spec.number}, which has '
                     f'{spec.features} channels.')
  return channels


def initial_input(key: Array, num_mels: int) -> Array:
  """Xavier (Glorot) uniform `[206, num_mels]`: fan-in 206 (time), fan-out num_mels.

  That is uniform in +-sqrt(6 / (206 + num_mels)) (+-0.134 for 128 mel bins), the value Keras'
  `glorot_uniform` gives for a 2-D variable of this shape.
  """
  init = jax.nn.initializers.glorot_uniform(in_axis=0, out_axis=1)
  return init(key, (model.RECEPTIVE_FIELD, num_mels), jnp.float32)


def neuron_keys(seed: int, layer: int, channel: Array | int) -> tuple[Array, Array]:
  """(initialization key, jitter key) of one neuron; a function of (seed, layer, channel) only."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), layer), channel)
  init_key, jitter_key = jax.random.split(key)
  return init_key, jitter_key


def _one_channel_conv_T(a_TxC: Array, kernel_KxC: Array, stride: int) -> Array:
  """VALID `conv1d` to a single output channel, as a matmul and a diagonal sum.

  out[t] = sum_k (a @ kernel.T)[stride * t + k, k]. Vmapped over neurons (each with its own
  kernel slice) this is a batched matmul; vmapping `conv1d` itself gives a grouped convolution,
  which XLA:CPU runs far slower. Tests hold it to the model.
  """
  k = kernel_KxC.shape[0]
  t_out = (a_TxC.shape[0] - k) // stride + 1
  products_TxK = a_TxC @ kernel_KxC.T
  rows_TxK = stride * jnp.arange(t_out)[:, None] + jnp.arange(k)[None]
  return jnp.sum(products_TxK[rows_TxK, jnp.arange(k)[None]], axis=1)


def _neuron_params(variables: PyTree, spec: model.LayerSpec, channel: Array | int) -> PyTree:
  """The target channel's slice of its layer: kernel `[K, C]`, then bias or batch norm.

  Sliced once per neuron, before the optimization loop rather than in every step.
  """
  pick = lambda t: jax.lax.dynamic_index_in_dim(t, channel, axis=-1, keepdims=False)
  conv = variables['params'][f'conv_{spec.number}']
  if not spec.batch_norm:
    return {'kernel_KxC': pick(conv['kernel']), 'bias': pick(conv['bias'])}
  return {'kernel_KxC': pick(conv['kernel']),
          'bn': jax.tree.map(pick, variables['params'][f'bn_{spec.number}']),
          'stats': jax.tree.map(pick, variables['batch_stats'][f'bn_{spec.number}'])}


def _channel_output_T(specs: tuple[model.LayerSpec, ...], bn_epsilon: float, variables: PyTree,
                      neuron: PyTree, x_TxF: Array, layer: int, point: str) -> Array:
  """One channel of one layer over time, VALID padding, inference mode.

  The layers below run in full with the model's `conv1d`; of the target layer only the one
  channel (`neuron`, from `_neuron_params`) is computed, so a neuron of layer 1 costs one
  output channel, not 256.
  """
  params, stats = variables['params'], variables['batch_stats']
  a = x_TxF[None]
  for spec in specs[:layer - 1]:
    n = spec.number
    z = model.conv1d(a, params[f'conv_{n}']['kernel'], spec.stride, 'VALID')
    a = jax.nn.relu(model.batch_norm_inference(z, params[f'bn_{n}'], stats[f'bn_{n}'],
                                               bn_epsilon))
  spec = specs[layer - 1]
  z_T = _one_channel_conv_T(a[0], neuron['kernel_KxC'], spec.stride)
  if not spec.batch_norm:  # The output layer: logits, with a bias.
    return z_T + neuron['bias']
  bn_T = model.batch_norm_inference(z_T, neuron['bn'], neuron['stats'], bn_epsilon)
  return bn_T if point == 'bn' else jax.nn.relu(bn_T)


def neuron_activation(config: ml_collections.ConfigDict, variables: PyTree, x_TxF: Array,
                      layer: int, channel: Array | int, objective_point: str = 'bn') -> Array:
  """Time-averaged activation of channel `channel` of layer `layer` for a 206-frame window."""
  specs = model.layer_specs(config.model)
  spec = _check_layer(specs, layer)
  _check_channels(spec, channel)
  if objective_point not in OBJECTIVE_POINTS:
    raise ValueError(f'objective_point must be one of {OBJECTIVE_POINTS}, got '
                     f'{objective_point!r}.')
  if x_TxF.shape != (model.RECEPTIVE_FIELD, config.features.num_mels):
    raise ValueError(f'x_TxF must have shape ({model.RECEPTIVE_FIELD}, '
                     f'{config.features.num_mels}), got {x_TxF.shape}.')
  neuron = _neuron_params(variables, spec, channel)
  return jnp.mean(_channel_output_T(specs, config.model.bn_epsilon, variables, neuron, x_TxF,
                                    layer, objective_point))


def penalty(x_TxF: Array, l1: float, l2: float, tv_time: float = 0.0,
            tv_freq: float = 0.0) -> Array:
  """The regularizer subtracted from the activation: L1, squared L2 and total variation."""
  value = l1 * jnp.sum(jnp.abs(x_TxF)) + l2 * jnp.sum(x_TxF ** 2)
  if tv_time:
    value += tv_time * jnp.sum(jnp.abs(jnp.diff(x_TxF, axis=0)))
  if tv_freq:
    value += tv_freq * jnp.sum(jnp.abs(jnp.diff(x_TxF, axis=1)))
  return value


def _maximize_one(variables: PyTree, channel: Array, *, specs: tuple[model.LayerSpec, ...],
                  bn_epsilon: float, num_mels: int, layer: int,
                  am: ml_collections.FrozenConfigDict) -> AMResult:
  """Adam ascent of one neuron's objective; pure, so it can be vmapped over `channel`."""
  init_key, jitter_key = neuron_keys(am.seed, layer, channel)
  x0 = initial_input(init_key, num_mels)
  neuron = _neuron_params(variables, specs[layer - 1], channel)
  optimizer = optax.adam(am.learning_rate)

  def loss(x, step):
    shifted = x
    if am.jitter:
      shift = jax.random.randint(jax.random.fold_in(jitter_key, step), (), -am.jitter,
                                 am.jitter + 1)
      shifted = jnp.roll(x, shift, axis=0)
    activation = jnp.mean(_channel_output_T(specs, bn_epsilon, variables, neuron, shifted, layer,
                                            am.objective_point))
    objective = activation - penalty(x, am.l1, am.l2, am.tv_time, am.tv_freq)
    return -objective, (objective, activation)

  def update(carry, step):
    x, opt_state = carry
    (_, aux), grad = jax.value_and_grad(loss, has_aux=True)(x, step)
    updates, opt_state = optimizer.update(grad, opt_state, x)
    return (optax.apply_updates(x, updates), opt_state), aux

  (x, _), (objective, activation) = jax.lax.scan(update, (x0, optimizer.init(x0)),
                                                 jnp.arange(am.steps))
  return AMResult(x, x0, objective, activation)


_STATIC = ('specs', 'bn_epsilon', 'num_mels', 'layer', 'am')
_maximize_one_jit = jax.jit(_maximize_one, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC + ('batch_size',))
def _maximize_many_jit(variables: PyTree, channels_N: Array, *, batch_size: int | None,
                       **static) -> AMResult:
  one = lambda c: _maximize_one(variables, c, **static)
  if batch_size:
    return jax.lax.map(one, channels_N, batch_size=batch_size)
  return jax.vmap(one)(channels_N)


def _static_args(config: ml_collections.ConfigDict, layer: int,
                 am: ml_collections.ConfigDict | None) -> dict[str, Any]:
  am = config.am if am is None else am
  rules.check_section('am', am, RULES)
  specs = model.layer_specs(config.model)
  _check_layer(specs, layer)
  return dict(specs=specs, bn_epsilon=float(config.model.bn_epsilon),
              num_mels=int(config.features.num_mels), layer=int(layer),
              am=ml_collections.FrozenConfigDict(am))


def maximize_neuron(config: ml_collections.ConfigDict, variables: PyTree, layer: int,
                    channel: int, am: ml_collections.ConfigDict | None = None) -> AMResult:
  """Optimal input `[206, num_mels]` for one neuron (jitted; recompiles per layer, not channel).

  Args:
    config: the model's experiment config.
    variables: {'params', 'batch_stats'} of the model.
    layer: 1..12 as in SPEC §2.
    channel: the neuron (for layer 12 a token id).
    am: AM settings (a config's `am` section); None for `config.am`.
  Returns:
    AMResult without a neuron axis.
  """
  static = _static_args(config, layer, am)
  if _check_channels(static['specs'][layer - 1], channel).ndim:
    raise ValueError('maximize_neuron takes one channel; use maximize_neurons for several.')
  return _maximize_one_jit(variables, jnp.asarray(channel, jnp.int32), **static)


def maximize_neurons(config: ml_collections.ConfigDict, variables: PyTree, layer: int,
                     channels_N: Sequence[int] | np.ndarray,
                     am: ml_collections.ConfigDict | None = None,
                     batch_size: int | None = None) -> AMResult:
  """Optimal inputs for many neurons of one layer in one jitted, vmapped optimization.

  Equal (up to float rounding) to `maximize_neuron` on each channel in turn.

  Args:
    config, variables, layer, am: as for `maximize_neuron`.
    channels_N: the neurons, e.g. `range(256)` for every channel of layer 1 of `paper`.
    batch_size: None runs all N neurons side by side; otherwise that many at a time
      (`lax.map`), to bound memory for wide or high layers; on a CPU a few neurons per batch
      keep the optimizer state in cache (`benchmarks/activation_max_benchmark.py`).
  Returns:
    AMResult with a leading axis N.
  """
  static = _static_args(config, layer, am)
  channels_N = _check_channels(static['specs'][layer - 1], channels_N)
  if channels_N.ndim != 1 or channels_N.size == 0:
    raise ValueError(f'channels_N must be a non-empty 1-D sequence, got shape {channels_N.shape}.')
  if batch_size is not None and batch_size < 1:
    raise ValueError(f'batch_size must be None or at least 1, got {batch_size}.')
  return _maximize_many_jit(variables, jnp.asarray(channels_N, jnp.int32),
                            batch_size=batch_size, **static)


def choose_neurons(config: ml_collections.ConfigDict, variables: PyTree, frame_WxF: Array,
                   letter: str) -> dict[int, int]:
  """The paper's neuron per layer for a frame predicted as `letter` (§4.1).

  Layers 1-11: the channel whose activation (after batch norm and ReLU) averaged over time is
  highest; for layers 10 and 11 the window has one position, so that is the most active neuron.
  Layer 12: the letter's own output neuron.

  Args:
    frame_WxF: a `[206, num_mels]` window whose VALID logits predict `letter`.
  Returns:
    {layer number: channel}.
  """
  token = vocab.letter_id(letter)
  expected = (model.RECEPTIVE_FIELD, config.features.num_mels)
  if frame_WxF.shape != expected:
    raise ValueError(f'frame_WxF must have shape {expected}, got {frame_WxF.shape}.')
  logits, intermediates = model.apply_inference(config, variables, jnp.asarray(frame_WxF)[None],
                                                padding='VALID')
  predicted = int(jnp.argmax(logits[0, 0]))
  if predicted != token:
    raise ValueError(f'the frame is predicted as {vocab.TOKENS[predicted]!r}, not {letter!r}; '
                     'choose neurons on a frame predicted as the letter.')
  specs = model.layer_specs(config.model)
  chosen = {spec.number: int(jnp.argmax(jnp.mean(intermediates[spec.name]['act'][0], axis=0)))
            for spec in specs[:-1]}
  chosen[specs[-1].number] = token
  return chosen


def optimal_inputs_for_letter(config: ml_collections.ConfigDict, variables: PyTree,
                              frame_WxF: Array, letter: str, layers: Sequence[int] = (1, 2, 11, 12),
                              am: ml_collections.ConfigDict | None = None
                              ) -> dict[int, tuple[int, AMResult]]:
  """Figure 1: AM for the neurons `choose_neurons` picks in `layers`.

  Returns:
    {layer: (channel, AMResult)} in the order of `layers`.
  """
  chosen = choose_neurons(config, variables, frame_WxF, letter)
  for layer in layers:
    if layer not in chosen:
      raise ValueError(f'layer must be in 1..{len(chosen)}, got {layer}.')
  return {layer: (chosen[layer], maximize_neuron(config, variables, layer, chosen[layer], am))
          for layer in layers}
