"""Layer-wise relevance propagation for Wav2Letter (SPEC §6, paper eqs. 2-5).

LRP works on the network as a tuple of `network.Layer`s (kernel, optional bias, optional batch
norm, stride); every layer but the last is followed by its batch norm (inference mode) and a
ReLU, and the last one is the output layer.

Rules (`rule=`):

* `paper` (the paper's eq. 3, `paper_rule`): `r_ij = z_ij / (|z_j| + 1e-21) * sgn(bn(z_j))`,
  where `z_ij = a_i w_ij` and `z_j = sum_i z_ij (+ bias)`; `bn` is the layer's own batch norm
  (the identity for the output layer). Starts from the one-hot vector of the target class and
  divides the relevances by their maximum absolute value after every layer
  (`max_abs_scaling`); the whole of it for one frame is `relevance_paper`.
* standard rules (`epsilon_rule`, `alpha_beta_rule`), on the network with batch norm folded into
  the preceding convolution (`network.fold_batch_norm`), as other LRP toolboxes do: `zero`
  (LRP-0), `epsilon` (denominator `z_j + eps * sign(z_j)` with sign(0) = +1, zennit's
  stabilizer), `zplus` and `alphabeta` (`z_ij` split by the sign of the product `a_i w_ij`, the
  bias's positive part joining the positive denominator and its negative part the negative
  one, as zennit does). They start from the target logit (one-hot x score), so conservation
  can be checked.

Two forms of every rule (`form=`):

* `fast`: `R_in = a * vjp(conv, s)` with `s_j = R_j * sgn(bn(z_j)) / (|z_j| + eps)` (paper) or
  the analogous `s` of the other rules: one transposed convolution per layer, because
  `sum_j z_ij s_j = a_i sum_j w_ij s_j`. The `z_ij` are never stored.
* `literal`: eqs. 3-4 as written, materializing `z_ij` for one output position after another
  (`lax.map`, `chunk` positions at a time). The reference the fast form is tested against.

A denominator that is exactly zero (after stabilization) passes no relevance.
"""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.introspection import frames
from navai_jax.recognizer import network

Array = jax.Array
PyTree = Any

Layer = network.Layer
Layers = network.Layers

RULES = ('paper', 'zero', 'epsilon', 'zplus', 'alphabeta')
FORMS = ('fast', 'literal')
STARTS = ('one_hot', 'logit')
PAPER_EPSILON = 1e-21
DEFAULT_EPSILON = {'paper': PAPER_EPSILON, 'zero': 0.0, 'epsilon': 1e-6, 'zplus': 1e-6,
                   'alphabeta': 1e-6}


def _stabilize(den: Array, epsilon: float) -> Array:
  """`den + eps * sign(den)` with sign(0) = +1 (zennit's stabilizer)."""
  return den + epsilon * jnp.where(den >= 0, 1.0, -1.0).astype(den.dtype)


def _divide(num: Array, den: Array) -> Array:
  """`num / den`, zero where `den` is exactly zero."""
  zero = den == 0
  return jnp.where(zero, 0.0, num / jnp.where(zero, 1.0, den))


def _transposed_conv(kernel_KxCxD: Array, stride: int, a_TxC: Array, s_UxD: Array) -> Array:
  """`sum_j w_ij s_j` for every input i: the vjp of the convolution (`network.conv_transpose`)."""
  return network.conv_transpose(s_UxD, kernel_KxCxD, stride, a_TxC.shape[0])


def _split(layer: Layer):
  """Positive and negative parts of kernel and bias (a missing bias counts as zero)."""
  k = layer.kernel_KxCxD
  b = jnp.zeros(k.shape[-1], k.dtype) if layer.bias_D is None else layer.bias_D
  return (jnp.maximum(k, 0), jnp.minimum(k, 0)), (jnp.maximum(b, 0), jnp.minimum(b, 0))


def paper_rule(layer: Layer, a_TxC: Array, z_UxD: Array, r_UxD: Array,
               epsilon: float = PAPER_EPSILON) -> Array:
  """The paper's rule, eqs. 3-4, for one layer (the max-abs scaling is `max_abs_scaling`).

  `R_i = sum_j z_ij / (|z_j| + eps) * sgn(bn(z_j)) * R_j` with `z_ij = a_i w_ij`, computed as
  `a_i * sum_j w_ij s_j` with `s_j = R_j sgn(bn(z_j)) / (|z_j| + eps)`: one transposed
  convolution. `bn` is the layer's own batch norm (the identity for the output layer).
  """
  s = r_UxD * jnp.sign(network.batch_norm(layer, z_UxD)) / (jnp.abs(z_UxD) + epsilon)
  return a_TxC * _transposed_conv(layer.kernel_KxCxD, layer.stride, a_TxC, s)


def epsilon_rule(layer: Layer, a_TxC: Array, z_UxD: Array, r_UxD: Array,
                 epsilon: float) -> Array:
  """LRP-epsilon (LRP-0 at epsilon 0): `R_i = sum_j z_ij / (z_j + eps sgn(z_j)) R_j`."""
  s = _divide(r_UxD, _stabilize(z_UxD, epsilon))
  return a_TxC * _transposed_conv(layer.kernel_KxCxD, layer.stride, a_TxC, s)


def alpha_beta_rule(layer: Layer, a_TxC: Array, r_UxD: Array, epsilon: float, alpha: float,
                    beta: float) -> Array:
  """LRP-alpha-beta (z+ at alpha 1, beta 0): positive and negative contributions apart."""
  # z+_ij = a+ w+ + a- w-, z-_ij = a+ w- + a- w+; the two products of each part run as one
  # convolution over the stacked inputs [a+, a-].
  (w_pos, w_neg), (b_pos, b_neg) = _split(layer)
  a_pm = jnp.concatenate([jnp.maximum(a_TxC, 0), jnp.minimum(a_TxC, 0)], axis=-1)

  def part(w_same, w_other, b):
    w = jnp.concatenate([w_same, w_other], axis=1)
    s = _divide(r_UxD, _stabilize(network.conv(a_pm, w, layer.stride) + b, epsilon))
    r = a_pm * _transposed_conv(w, layer.stride, a_pm, s)
    return r[:, :a_TxC.shape[1]] + r[:, a_TxC.shape[1]:]

  r = alpha * part(w_pos, w_neg, b_pos)
  return r if beta == 0 else r - beta * part(w_neg, w_pos, b_neg)


def _backward_fast(layer: Layer, a_TxC: Array, z_UxD: Array, r_UxD: Array, rule: str,
                   epsilon: float, alpha: float, beta: float) -> Array:
  """Relevance of the layer's input from that of its output under `rule`."""
  if rule == 'paper':
    return paper_rule(layer, a_TxC, z_UxD, r_UxD, epsilon)
  if rule in ('zero', 'epsilon'):
    return epsilon_rule(layer, a_TxC, z_UxD, r_UxD, epsilon)
  return alpha_beta_rule(layer, a_TxC, r_UxD, epsilon, alpha, beta)


def _backward_literal(layer: Layer, a_TxC: Array, r_UxD: Array, rule: str, epsilon: float,
                      alpha: float, beta: float, chunk: int) -> Array:
  """Eqs. 3-4 as written: z_ij materialized for each output position j in turn."""
  kernel = layer.kernel_KxCxD
  k = kernel.shape[0]
  bias_D = jnp.zeros(kernel.shape[-1], kernel.dtype) if layer.bias_D is None else layer.bias_D

  def position(args):
    u, r_D = args
    a_KxC = jax.lax.dynamic_slice_in_dim(a_TxC, u * layer.stride, k, axis=0)
    z_KxCxD = a_KxC[:, :, None] * kernel  # Local pre-activations z_ij.
    if rule in ('paper', 'zero', 'epsilon'):
      z_D = jnp.sum(z_KxCxD, axis=(0, 1)) + bias_D  # Global pre-activations z_j.
      if rule == 'paper':  # Eq. 3 as written, the reference of `paper_rule`.
        ratio = z_KxCxD / (jnp.abs(z_D) + epsilon) * jnp.sign(network.batch_norm(layer, z_D))
      else:
        ratio = _divide(z_KxCxD, _stabilize(z_D, epsilon))
    else:
      z_pos, z_neg = jnp.maximum(z_KxCxD, 0), jnp.minimum(z_KxCxD, 0)
      den_pos = jnp.sum(z_pos, axis=(0, 1)) + jnp.maximum(bias_D, 0)
      den_neg = jnp.sum(z_neg, axis=(0, 1)) + jnp.minimum(bias_D, 0)
      ratio = (alpha * _divide(z_pos, _stabilize(den_pos, epsilon))
               - beta * _divide(z_neg, _stabilize(den_neg, epsilon)))
    return ratio @ r_D  # Eq. 4: R_i = sum_j r_ij R_j.

  num_out = r_UxD.shape[0]
  r_UxKxC = jax.lax.map(position, (jnp.arange(num_out), r_UxD),
                        batch_size=None if chunk == 1 else chunk)
  index_UxK = jnp.arange(num_out)[:, None] * layer.stride + jnp.arange(k)[None]
  return jnp.zeros_like(a_TxC).at[index_UxK].add(r_UxKxC)


def max_abs_scaling(r: Array) -> Array:
  """The paper's scaling after every layer (§3.4): divided by the maximum absolute value
  (all-zero relevances stay zero)."""
  m = jnp.max(jnp.abs(r))
  return jnp.where(m > 0, r / jnp.where(m > 0, m, 1.0), r)


def resolve_options(rule: str = 'paper', form: str = 'fast', normalize: Optional[bool] = None,
                    start: Optional[str] = None, epsilon: Optional[float] = None,
                    alpha: float = 2.0, beta: float = 1.0, chunk: int = 1) -> dict[str, Any]:
  """Checks LRP options and fills in each rule's defaults; raises ValueError on bad ones."""
  if rule not in RULES:
    raise ValueError(f'unknown LRP rule {rule!r}; valid rules: {", ".join(RULES)}')
  if form not in FORMS:
    raise ValueError(f'unknown LRP form {form!r}; valid forms: {", ".join(FORMS)}')
  start = start or ('one_hot' if rule == 'paper' else 'logit')
  if start not in STARTS:
    raise ValueError(f'unknown LRP start {start!r}; valid starts: {", ".join(STARTS)}')
  if rule == 'zero' and epsilon not in (None, 0, 0.0):
    raise ValueError(f'the zero rule has no epsilon (got {epsilon}); use rule="epsilon"')
  epsilon = DEFAULT_EPSILON[rule] if epsilon is None else float(epsilon)
  if epsilon < 0:
    raise ValueError(f'epsilon must be >= 0, got {epsilon}')
  if rule == 'zplus':
    alpha, beta = 1.0, 0.0
  if alpha < 0 or beta < 0 or not np.isclose(alpha - beta, 1.0):
    raise ValueError(f'alphabeta needs alpha, beta >= 0 and alpha - beta = 1, got {alpha}, {beta}')
  if int(chunk) < 1:
    raise ValueError(f'chunk must be a positive number of positions, got {chunk}')
  return dict(rule=rule, form=form, normalize=rule == 'paper' if normalize is None else
              bool(normalize), start=start, epsilon=epsilon, alpha=float(alpha),
              beta=float(beta), chunk=int(chunk))


def layer_relevance(layer: Layer, a_TxC: Array, z_UxD: Array, r_UxD: Array, **options) -> Array:
  """One step of LRP: the relevance of a layer's input `a` from that of its output.

  Args:
    layer: the convolution (for the standard rules, with batch norm already folded).
    a_TxC: its input; z_UxD: its conv output (bias included; unused by the literal form);
    r_UxD: the relevance of its output.
    **options: see `resolve_options`; `normalize` divides the result by its maximum |value|.
  """
  o = resolve_options(**options)
  if o['form'] == 'fast':
    r = _backward_fast(layer, a_TxC, z_UxD, r_UxD, o['rule'], o['epsilon'], o['alpha'],
                       o['beta'])
  else:
    r = _backward_literal(layer, a_TxC, r_UxD, o['rule'], o['epsilon'], o['alpha'], o['beta'],
                          o['chunk'])
  return max_abs_scaling(r) if o['normalize'] else r


def start_relevance(layers: Layers, pre: tuple[Array, ...], target: Optional[Array],
                    o: dict[str, Any]) -> tuple[Layers, tuple[Array, ...], Array]:
  """The network and conv outputs the rule of `o` (`resolve_options`) reads (batch norm folded
  for the standard rules), and the relevance `[1, V]` LRP starts from: the one-hot vector of
  `target` (None: the arg-max class), times the logit for `start='logit'`."""
  if o['rule'] != 'paper':
    pre = tuple(network.batch_norm(layer, z) for layer, z in zip(layers, pre))
    layers = network.fold_batch_norm(layers)
  logits_UxV = network.output(layers, pre)
  if logits_UxV.shape[0] != 1:
    raise ValueError(f'LRP explains one output position; this pass has {logits_UxV.shape[0]} '
                     '(the window must be exactly the receptive field)')
  logits_V = logits_UxV[0]
  target = jnp.argmax(logits_V) if target is None else target
  r = jax.nn.one_hot(target, logits_V.shape[0], dtype=logits_V.dtype)
  if o['start'] == 'logit':
    r = r * logits_V
  return layers, pre, r[None]


def relevance(layers: Layers, inputs: tuple[Array, ...], pre: tuple[Array, ...],
              target: Optional[Array] = None, *, return_layers: bool = False, **options
              ) -> Array | tuple[Array, tuple[Array, ...]]:
  """LRP of one frame from the activations of its pass (pure; jit and vmap as you like).

  Args:
    layers: the network (`network.layers_from_variables`).
    inputs, pre: per-layer inputs and conv outputs of the frame (`network.forward`, or sliced
      from an utterance's pass by `frames.window_activations`); the last layer has one position.
    target: class to explain; None: the predicted (arg-max) class.
    return_layers: also return the relevance at every layer.
    **options: see `resolve_options` (rule, form, normalize, start, epsilon, alpha, beta, chunk).
  Returns:
    The relevance of the input, shaped like `inputs[0]`; with `return_layers`, also a tuple
    whose entry l is the relevance of `inputs[l]` and whose last entry is the output's.
  """
  o = resolve_options(**options)
  layers, pre, r = start_relevance(layers, pre, target, o)
  per_layer = [r]
  for layer, a, z in reversed(list(zip(layers, inputs, pre))):
    r = layer_relevance(layer, a, z, r, **o)
    per_layer.append(r)
  per_layer.reverse()
  return (r, tuple(per_layer)) if return_layers else r


_PAPER = resolve_options(rule='paper')


def relevance_paper(layers: Layers, inputs: tuple[Array, ...], pre: tuple[Array, ...],
                    target: Optional[Array] = None) -> Array:
  """The paper's LRP of one frame (eqs. 2-5): from the one-hot vector of `target` (eq. 2),
  `paper_rule` (eqs. 3-4) and `max_abs_scaling` layer by layer down to the input. The same
  as `relevance(..., rule='paper')`."""
  return relevance(layers, inputs, pre, target, **_PAPER)


# A conv output is "within float32 rounding of zero" where |z_j| <= CONDITIONING_TOLERANCE *
# sum_i |z_ij|: the float32 rounding of the activations a_i alone moves z_j by about
# 2^-24 sum_i |z_ij|, so z_j keeps fewer than ~8 correct bits and eq. 3's ratio z_ij / |z_j| is
# wrong by more than ~0.4%. (2^-13 flagged every frame of a trained `small` model, 2^-19 missed
# most of its frames whose map is off by over 1%; experiments/lrp_precision.py measures it.)
CONDITIONING_TOLERANCE = 2.0 ** -16


def ill_conditioned_share(layers: Layers, inputs: tuple[Array, ...], pre: tuple[Array, ...],
                          target: Optional[Array] = None,
                          tolerance: float = CONDITIONING_TOLERANCE) -> Array:
  """Per layer, the share of the paper rule's relevance flow that passes through units whose
  conv output is within float32 rounding of zero (`CONDITIONING_TOLERANCE`).

  Eq. 3 divides by `|z_j| + 1e-21`: where `z_j` is much smaller than its terms, any rounding of
  the activations (float32 against float64, one processor against another) changes the ratio
  a lot, and the max-abs scaling of the layers below carries that on. This is the rule's own
  conditioning, not the arithmetic's: computing the ratio in float64 from float32 activations
  cannot repair it. So the map is computed as the paper writes it, and this says per frame
  how much of it rests on such units (0: none).

  Returns:
    `[L]`: entry l - 1 is, for layer l, `sum_ij |r_ij R_j| [j ill-conditioned] /
    sum_ij |r_ij R_j|`: the flow of eq. 4 into the layer's input, in absolute values.
  """
  _, per_layer = relevance(layers, inputs, pre, target, return_layers=True, rule='paper')
  shares = []
  for i, layer in enumerate(layers):
    kernel = jnp.abs(layer.kernel_KxCxD)
    bias = 0.0 if layer.bias_D is None else jnp.abs(layer.bias_D)
    magnitude = network.conv(jnp.abs(inputs[i]), kernel, layer.stride) + bias
    ill = jnp.abs(pre[i]) <= tolerance * magnitude
    s = jnp.abs(per_layer[i + 1]) / (jnp.abs(pre[i]) + PAPER_EPSILON)
    flow = lambda s: jnp.sum(jnp.abs(inputs[i]) * _transposed_conv(kernel, layer.stride,
                                                                     inputs[i], s))
    shares.append(flow(jnp.where(ill, s, 0.0)) / jnp.maximum(flow(s), 1e-30))
  return jnp.stack(shares)


def float64_agreement(layers: Layers, windows_NxWxF: np.ndarray, targets_N: np.ndarray
                      ) -> dict[str, np.ndarray]:
  """How far the float32 paper rule (fast form) is from the same rule in float64 (the literal
  form, eqs. 3-4 written out, on a float64 forward pass), per frame.

  Returns `error` (max |difference| / max |float64 map|), `correlation` and
  `ill_conditioned_share` (`ill_conditioned_share`'s largest layer), each `[N]`.
  """
  windows, targets = jnp.asarray(windows_NxWxF, jnp.float32), jnp.asarray(targets_N)
  ours = jax.jit(jax.vmap(lambda x, t: (
      relevance(layers, *network.forward(layers, x), t),
      ill_conditioned_share(layers, *network.forward(layers, x), t))))
  maps, share = (np.asarray(a) for a in ours(windows, targets))
  with jax.enable_x64(True):
    wide = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), layers)
    reference = jax.jit(jax.vmap(lambda x, t: relevance(
        wide, *network.forward(wide, x), t, form='literal', chunk=8)))
    exact = np.asarray(reference(jnp.asarray(windows_NxWxF, jnp.float64), targets))
  flat = lambda a: a.reshape(len(a), -1)
  return {'error': np.abs(flat(maps) - flat(exact)).max(1) / np.abs(flat(exact)).max(1),
          'correlation': np.array([np.corrcoef(a, b)[0, 1]
                                   for a, b in zip(flat(maps), flat(exact))]),
          'ill_conditioned_share': share.max(1)}


_STATIC = ('rule', 'form', 'normalize', 'start', 'epsilon', 'alpha', 'beta', 'chunk',
           'return_layers')


@functools.partial(jax.jit, static_argnames=_STATIC)
def _lrp_windows(layers, windows_NxWxF, targets_N, **options):
  def one(window, target):
    return relevance(layers, *network.forward(layers, window), target, **options)
  return jax.vmap(one, in_axes=(0, None if targets_N is None else 0))(windows_NxWxF, targets_N)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _lrp_sliced(layers, inputs, pre, targets_N, **options):
  def one(inputs, pre, target):
    return relevance(layers, inputs, pre, target, **options)
  return jax.vmap(one, in_axes=(0, 0, None if targets_N is None else 0))(inputs, pre, targets_N)


def lrp_batch(config: ml_collections.ConfigDict, variables: PyTree, windows_NxWxF: Array,
              targets_N: Optional[Array] = None, *, return_layers: bool = False, **options):
  """LRP of a batch of `[206, F]` windows (jitted, vmapped over frames); see `relevance`."""
  frames.check_windows(config, windows_NxWxF, batched=True)
  network.check_targets(targets_N, np.shape(windows_NxWxF)[0])
  return _lrp_windows(network.layers_from_variables(config, variables), windows_NxWxF, targets_N,
                      return_layers=return_layers, **resolve_options(**options))


def lrp(config: ml_collections.ConfigDict, variables: PyTree, window_WxF: Array,
        target: Optional[int] = None, *, rule: str = 'paper', form: str = 'fast',
        return_layers: bool = False, **options):
  """LRP of one `[206, F]` window -> `relevance_WxF` (and per-layer relevances if asked).

  Args:
    config: experiment config.
    variables: model variables (params and batch_stats).
    window_WxF: one receptive window.
    target: class to explain; None: the predicted class.
    rule: one of RULES. form: 'fast' or 'literal'.
    return_layers: also return the relevance at every layer (see `relevance`).
    **options: normalize, start, epsilon, alpha, beta, chunk (see `resolve_options`).
  """
  frames.check_windows(config, window_WxF, batched=False)
  targets = None if target is None else np.asarray([target])
  out = lrp_batch(config, variables, jnp.asarray(window_WxF)[None], targets, rule=rule,
                  form=form, return_layers=return_layers, **options)
  return jax.tree.map(lambda a: a[0], out)


def lrp_frames(config: ml_collections.ConfigDict, variables: PyTree, x_BxTxF: Array,
               intermediates: dict[str, dict[str, Array]], utterance_N: Array, position_N: Array,
               targets_N: Optional[Array] = None, **options) -> Array:
  """LRP of frames of a batch of utterances from their shared SAME-padded pass.

  Args:
    x_BxTxF, intermediates: features and the intermediates of `model.apply_inference` on them.
    utterance_N, position_N: the frames (e.g. from `frames.select`); every window must lie
      inside its utterance.
    targets_N: classes to explain; None: the predicted ones.
  Returns:
    `relevance_NxWxF`.
  """
  network.check_targets(targets_N, np.shape(utterance_N)[0])
  inputs, pre = frames.window_activations(config, x_BxTxF, intermediates, utterance_N,
                                          position_N)
  return _lrp_sliced(network.layers_from_variables(config, variables), inputs, pre, targets_N,
                     return_layers=False, **resolve_options(**options))
