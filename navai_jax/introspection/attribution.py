"""Local introspection of single frames: sensitivity, LRP and other attribution methods.

Every method maps one `[206, F]` window to a map of the same shape that explains the score of a
target class (default: the predicted one). The `*_map` functions are pure functions of the
network's `network.Layer`s and one window, for callers who jit and vmap themselves;
`attribute(method, ...)` runs any of them jitted and vmapped over a batch of windows.

| method                 | map                                                      | scores  |
|------------------------|----------------------------------------------------------|---------|
| `sensitivity`          | d(R_out . y)/dx (paper eq. 1)                            | softmax |
| `lrp`                  | `lrp.relevance` (rule and options as keywords)           | -       |
| `gradient_x_input`     | x * dy_t/dx                                              | logit   |
| `integrated_gradients` | x * mean_k dy_t/dx at (k + 1/2)/steps * x (baseline 0)   | logit   |
| `smoothgrad`           | mean of the sensitivity over x + N(0, noise_std^2)       | softmax |
| `guided_backprop`      | gradient through ReLUs that pass only positive gradients | logit   |
|                        | where their forward input was positive                   |         |
| `grad_cam`             | ReLU(sum_c w_c A_c(t)), w_c = time-mean of dy_t/dA_c, at | logit   |
|                        | one layer; upsampled to 206 frames, same for all bins    |         |

"scores" is the default `output=` ('softmax' or 'logit'). The paper's discussion of saturated,
near one-hot predictions implies softmax outputs for sensitivity (SPEC §5); the methods
built on a linear-path argument (gradient x input, integrated gradients) and the methods from
image classification (guided backprop, Grad-CAM) use the logit, as is usual for them.
"""

import functools
import inspect
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.recognizer import network

Array = jax.Array
PyTree = Any
Layers = network.Layers

OUTPUTS = ('softmax', 'logit')


def _check_output(output: str) -> None:
  if output not in OUTPUTS:
    raise ValueError(f'unknown output {output!r}; valid outputs: {", ".join(OUTPUTS)}')


def output_cotangent(logits_V: Array, target: Array, output: str) -> Array:
  """`d y_target / d logits`: the cotangent that starts every gradient map (paper eq. 1).

  For the softmax, `d y_t / d z_k = y_t (delta_tk - y_k)`. The target's own entry is written
  `y_t * sum_{k != t} y_k`, never `y_t (1 - y_t)`: in float32 `y_t` rounds to 1.0 from a logit
  margin of about 17 nats, and `1 - y_t` would drop the target's term from the map (SPEC §5).
  The sum of the other classes is `exp(logsumexp_{k != t} z_k - logsumexp z)`, exact down to
  float32's smallest normal numbers (a margin of ~80 nats; beyond ~100 the map itself is below
  them and comes out all zeros).
  """
  _check_output(output)
  onehot_V = jax.nn.one_hot(target, logits_V.shape[0], dtype=logits_V.dtype)
  if output == 'logit':
    return onehot_V
  log_y_V = jax.nn.log_softmax(logits_V)
  others = jnp.exp(jax.nn.logsumexp(jnp.where(onehot_V > 0, -jnp.inf, logits_V))
                   - jax.nn.logsumexp(logits_V))
  y_t = jnp.exp(log_y_V[target])
  return jnp.where(onehot_V > 0, y_t * others, -y_t * jnp.exp(log_y_V))


def _gradient(layers: Layers, x_WxF: Array, target: Optional[Array], output: str,
              relu=jax.nn.relu) -> Array:
  """d(R_out . y)/dx with R_out the one-hot vector of `target` (default: predicted class)."""
  _check_output(output)
  logits_V, vjp = jax.vjp(lambda x: network.logits(layers, x, relu=relu), x_WxF)
  target = jnp.argmax(logits_V) if target is None else target
  return vjp(output_cotangent(logits_V, target, output))[0]


def _predicted(layers: Layers, x_WxF: Array) -> Array:
  return jnp.argmax(network.logits(layers, x_WxF))


def sensitivity_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                    output: str = 'softmax') -> Array:
  """Sensitivity, paper eq. 1, of one window: `sensitivity_of_pass` after its forward pass."""
  _check_output(output)
  return sensitivity_of_pass(layers, *network.forward(layers, x_WxF), target, output=output)


def sensitivity_of_pass(layers: Layers, inputs: tuple[Array, ...], pre: tuple[Array, ...],
                        target: Optional[Array] = None, *, output: str = 'softmax',
                        layer_gradients: bool = False
                        ) -> Array | tuple[Array, tuple[Array, ...]]:
  """Sensitivity, paper eq. 1: the gradient of the target's softmax output (or logit) with
  respect to the input, from the activations of the frame's pass.

  The backward pass written out: the output's gradient (softmax Jacobian row or one-hot), then
  per layer, top down, a transposed convolution (`network.conv_transpose`) and the ReLU's and
  batch norm's derivatives from the stored conv outputs. With `inputs, pre` sliced from an
  utterance's pass (`frames.window_activations`), many frames share one forward pass, as LRP's
  do (`lrp.lrp_frames`).

  Args:
    inputs, pre: per-layer inputs and conv outputs (`network.forward` of the window, or
      `frames.window_activations`); the last layer has one position.
    target: class; None: the predicted one.
    layer_gradients: also return the gradient of the same output with respect to every
      layer's output (after its batch norm and ReLU; the logits for the last layer), which
      this backward pass computes on its way down (`layer_profiles` aligns by them).
  Returns:
    The map `[W, F]`; with `layer_gradients`, `(map, gradients)` where `gradients[l - 1]` is
    `[Z_l, C_l]` for layer l, Z_l the layer's positions in the window.
  """
  logits_V = network.output(layers, pre)[0]
  target = jnp.argmax(logits_V) if target is None else target
  g = output_cotangent(logits_V, target, output)[None]
  gradients = [g]
  for i in reversed(range(len(layers))):
    layer = layers[i]
    if layer.bn is not None:  # d bn(z) / dz
      g = g * layer.bn['scale'] * jax.lax.rsqrt(layer.bn['var'] + layer.bn_epsilon)
    g = network.conv_transpose(g, layer.kernel_KxCxD, layer.stride, inputs[i].shape[0])
    if i:  # through the ReLU of the layer below: inputs[i] = relu(bn(pre[i - 1]))
      gradients.append(g)  # d y / d (output of layer i), the input of layer i + 1
      g = jnp.where(network.batch_norm(layers[i - 1], pre[i - 1]) > 0, g, 0.0)
  return (g, tuple(reversed(gradients))) if layer_gradients else g


def gradient_x_input_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                         output: str = 'logit') -> Array:
  """Input times gradient."""
  return x_WxF * _gradient(layers, x_WxF, target, output)


def integrated_gradients_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                             steps: int = 32, output: str = 'logit') -> Array:
  """Integrated gradients from the all-zero baseline (the mean of a z-normalized spectrogram).

  The path integral is the midpoint rule with `steps` points; the map sums to
  y_t(x) - y_t(0) up to its error.
  """
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  target = _predicted(layers, x_WxF) if target is None else target
  alphas_J = (jnp.arange(steps, dtype=x_WxF.dtype) + 0.5) / steps
  grads = jax.vmap(lambda a: _gradient(layers, a * x_WxF, target, output))(alphas_J)
  return x_WxF * jnp.mean(grads, axis=0)


def smoothgrad_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                   key: Array, noise_std: float = 0.15, samples: int = 16,
                   output: str = 'softmax') -> Array:
  """SmoothGrad: the sensitivity averaged over copies of x with Gaussian noise.

  `noise_std` is in units of the z-normalized input (one standard deviation = 1).
  """
  if samples < 1 or noise_std < 0:
    raise ValueError(f'smoothgrad needs samples >= 1 and noise_std >= 0, got {samples}, '
                     f'{noise_std}')
  target = _predicted(layers, x_WxF) if target is None else target
  noise = noise_std * jax.random.normal(key, (samples,) + x_WxF.shape, x_WxF.dtype)
  grads = jax.vmap(lambda n: _gradient(layers, x_WxF + n, target, output))(noise)
  return jnp.mean(grads, axis=0)


@jax.custom_vjp
def guided_relu(x: Array) -> Array:
  """ReLU whose backward pass lets through only positive gradients at positive inputs."""
  return jnp.maximum(x, 0)


def _guided_relu_fwd(x):
  return jnp.maximum(x, 0), x


def _guided_relu_bwd(x, g):
  return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def guided_backprop_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                        output: str = 'logit') -> Array:
  """Guided backpropagation: the layers re-run with `guided_relu`."""
  return _gradient(layers, x_WxF, target, output, relu=guided_relu)


def _valid_lengths(layers: Layers, length: int) -> list[int]:
  """Output length of every layer for a VALID pass over `length` frames."""
  lengths = []
  for layer in layers:
    length = (length - layer.kernel_KxCxD.shape[0]) // layer.stride + 1
    lengths.append(length)
  return lengths


def default_grad_cam_layer(layers: Layers, length: int) -> int:
  """The highest layer (1-based) whose VALID output still has more than one time step."""
  return max(i + 1 for i, n in enumerate(_valid_lengths(layers, length)) if n > 1)


def grad_cam_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, *,
                 layer: Optional[int] = None, output: str = 'logit') -> Array:
  """Grad-CAM over time at the output (after ReLU) of layer `layer` (1-based).

  Channel weights are the time-averaged gradients of the target score; the map
  ReLU(sum_c w_c A_c(t)) is linearly interpolated between the centres of the receptive fields
  of the layer's positions onto the window's frames and repeated over all frequency bins: with
  1-D convolutions over time, Grad-CAM localizes in time only (paper §3.4).
  """
  layer = default_grad_cam_layer(layers, x_WxF.shape[0]) if layer is None else layer
  if not 1 <= layer < len(layers):
    raise ValueError(f'grad_cam layer must lie in [1, {len(layers) - 1}], got {layer}')
  upper = layers[layer:]
  inputs, _ = network.forward(layers, x_WxF)
  acts_TxC = inputs[layer]

  _check_output(output)
  logits_V, vjp = jax.vjp(lambda a: network.logits(upper, a), acts_TxC)
  target = jnp.argmax(logits_V) if target is None else target
  grads_TxC = vjp(output_cotangent(logits_V, target, output))[0]
  cam_T = jax.nn.relu(acts_TxC @ jnp.mean(grads_TxC, axis=0))
  # Receptive field and jump of the layer's positions within the window.
  field, jump = 1, 1
  for l in layers[:layer]:
    field += (l.kernel_KxCxD.shape[0] - 1) * jump
    jump *= l.stride
  centres_T = jnp.arange(cam_T.shape[0]) * jump + (field - 1) / 2
  cam_W = jnp.interp(jnp.arange(x_WxF.shape[0], dtype=x_WxF.dtype), centres_T, cam_T)
  return jnp.broadcast_to(cam_W[:, None], x_WxF.shape)


def lrp_map(layers: Layers, x_WxF: Array, target: Optional[Array] = None, **options) -> Array:
  """LRP (`lrp.relevance`) of one window; options: rule, form, normalize, start, epsilon, ..."""
  return lrp.relevance(layers, *network.forward(layers, x_WxF), target, **options)


METHODS = {
    'sensitivity': sensitivity_map,
    'lrp': lrp_map,
    'gradient_x_input': gradient_x_input_map,
    'integrated_gradients': integrated_gradients_map,
    'smoothgrad': smoothgrad_map,
    'guided_backprop': guided_backprop_map,
    'grad_cam': grad_cam_map,
}


def _check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
  if method not in METHODS:
    raise ValueError(f'unknown attribution method {method!r}; valid methods: '
                     f'{", ".join(METHODS)}')
  if method == 'lrp':
    return lrp.resolve_options(**options)
  allowed = [p for p in inspect.signature(METHODS[method]).parameters
             if p not in ('layers', 'x_WxF', 'target', 'key')]
  if method == 'smoothgrad':
    allowed.append('seed')
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(f'unknown option(s) {", ".join(unknown)} for {method!r}; valid options: '
                     f'{", ".join(allowed) or "none"}')
  if options.get('output', 'logit') not in OUTPUTS:
    raise ValueError(f'unknown output {options["output"]!r}; valid outputs: {", ".join(OUTPUTS)}')
  return options


@functools.lru_cache(maxsize=64)
def _batched(method: str, options: tuple[tuple[str, Any], ...], with_targets: bool):
  """The jitted, vmapped form of one method with fixed options."""
  options = dict(options)
  fn = METHODS[method]
  if method == 'smoothgrad':
    seed = options.pop('seed', 0)

    def run(layers, windows, targets):
      keys = jax.random.split(jax.random.key(seed), windows.shape[0])
      one = lambda x, t, k: fn(layers, x, t, key=k, **options)
      return jax.vmap(one, in_axes=(0, 0 if with_targets else None, 0))(windows, targets, keys)
  else:
    def run(layers, windows, targets):
      one = lambda x, t: fn(layers, x, t, **options)
      return jax.vmap(one, in_axes=(0, 0 if with_targets else None))(windows, targets)
  return jax.jit(run)


def attribute_layers(method: str, layers: Layers, windows_NxWxF: Array,
                     targets_N: Optional[Array] = None, **options) -> Array:
  """`attribute` on explicit `network.Layer`s (for networks that are not a Wav2Letter config)."""
  options = _check_options(method, options)
  if targets_N is not None:
    network.check_targets(targets_N, np.shape(windows_NxWxF)[0])
  fn = _batched(method, tuple(sorted(options.items())), targets_N is not None)
  return fn(layers, windows_NxWxF, targets_N)


def attribute(method: str, config: ml_collections.ConfigDict, variables: PyTree,
              windows_NxWxF: Array, targets: Optional[Array] = None, **options) -> Array:
  """Attribution maps `[N, 206, F]` of a batch of windows with any method of METHODS.

  Args:
    method: one of METHODS.
    config: experiment config.
    variables: model variables (params and batch_stats).
    windows_NxWxF: receptive windows.
    targets: `[N]` classes to explain; None: each window's predicted class.
    **options: the method's keywords (see its `*_map` function; `seed` for smoothgrad).
  """
  frames.check_windows(config, windows_NxWxF, batched=True)
  return attribute_layers(method, network.layers_from_variables(config, variables),
                          jnp.asarray(windows_NxWxF), targets, **options)


def target_probability(config: ml_collections.ConfigDict, variables: PyTree,
                       windows_NxWxF: Array, targets_N: Array) -> Array:
  """Softmax probability `[N]` of each window's target class."""
  frames.check_windows(config, windows_NxWxF, batched=True)
  return _target_probability(network.layers_from_variables(config, variables),
                             jnp.asarray(windows_NxWxF), jnp.asarray(targets_N))


@jax.jit
def _target_probability(layers: Layers, windows_NxWxF: Array, targets_N: Array) -> Array:
  logits_NxV = jax.vmap(lambda w: network.logits(layers, w))(windows_NxWxF)
  return jnp.take_along_axis(jax.nn.softmax(logits_NxV), targets_N[:, None], 1)[:, 0]
