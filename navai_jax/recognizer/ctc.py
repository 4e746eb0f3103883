"""CTC loss by the forward-backward algorithm, with its gradient in closed form.

`ctc_loss` takes the arguments of `optax.ctc_loss` and returns the same per-utterance negative
log-likelihood; training uses it by default (`config.train.ctc`), `optax.ctc_loss` is the other
choice and the reference the tests compare with. It exists for speed on accelerators:
`optax.ctc_loss` is a `lax.scan` over the output positions whose gradient is a second, reverse
scan through autodiff, so a long scan runs a few tiny kernels, one after another, per position
and direction (benchmarks/README.md gives the times; `benchmarks/step_breakdown.py` measures
them). Here one scan runs the forward
(alpha) and the backward (beta) recursion together, `unroll` positions per loop iteration, and
the gradient is read off alpha and beta at once (Graves et al. 2006, eq. 16):

  d(-log p) / d logit_t(k) = softmax_t(k) - sum_{s: z_s = k} exp(alpha_t(s) + beta_t(s)
                                                                   - emit_t(s) - log p)

with `z` the label sequence with blanks between the labels and at both ends (`S = 2L + 1`
states), `emit_t(s) = log softmax_t(z_s)`, and alpha and beta both including position t's
emission. Everything is in log space; impossible states hold `LOG_ZERO` (a finite number, so
that no gradient is NaN), which also makes a transcript that cannot fit the output positions
cost about `-LOG_ZERO` instead of infinity, as `optax.ctc_loss`'s `log_epsilon` does.

Unrolling pays on an accelerator and costs on a CPU, hence `default_unroll`.

The one-hot sum over states runs at full float32 precision. `optax.ctc_loss` gathers its
emission scores with a matrix product at the default precision, which is TF32 on recent NVIDIA
GPUs: there its loss is off by ~4e-5 (relative) and its gradient by ~2e-3, against ~2e-7 and
~2e-5 here (float64 reference; `tests/ctc_test.py` compares with optax at 'highest' precision).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from navai_jax.recognizer import vocab

Array = jax.Array

LOG_ZERO = -1e5


def default_unroll() -> int:
  """Output positions per scan iteration where `config.train.ctc_unroll` is 0: 1 on a CPU,
  16 on an accelerator (see `benchmarks/step_breakdown.py --ctc_unrolls`)."""
  return 1 if jax.default_backend() == 'cpu' else 16


def _logsumexp3(a: Array, b: Array, c: Array) -> Array:
  top = jnp.maximum(jnp.maximum(a, b), c)
  return top + jnp.log(jnp.exp(a - top) + jnp.exp(b - top) + jnp.exp(c - top))


def _shift(x_BxS: Array, by: int) -> Array:
  """`x[:, s - by]` (by > 0) or `x[:, s + |by|]` (by < 0), `LOG_ZERO` where that is outside."""
  fill = jnp.full((x_BxS.shape[0], abs(by)), LOG_ZERO, x_BxS.dtype)
  if by > 0:
    return jnp.concatenate([fill, x_BxS[:, :-by]], axis=1)
  return jnp.concatenate([x_BxS[:, -by:], fill], axis=1)


def _states(labels_BxL: Array, label_paddings_BxL: Array, blank_id: int):
  """The blank-extended label sequence `z`, where a state may skip the one before, and ends."""
  batch, max_labels = labels_BxL.shape
  z_BxS = jnp.full((batch, 2 * max_labels + 1), blank_id, labels_BxL.dtype)
  z_BxS = z_BxS.at[:, 1::2].set(labels_BxL)
  # A label state may be reached from the label two states before (skipping the blank between
  # them) unless the two labels are the same.
  skip_BxS = jnp.zeros(z_BxS.shape, bool).at[:, 3::2].set(labels_BxL[:, 1:] != labels_BxL[:, :-1])
  num_labels_B = max_labels - jnp.sum(label_paddings_BxL, axis=1).astype(jnp.int32)
  state_S = jnp.arange(2 * max_labels + 1)
  # A path ends in the last label or the blank after it.
  end_BxS = ((state_S[None] == 2 * num_labels_B[:, None])
             | (state_S[None] == 2 * num_labels_B[:, None] - 1))
  return z_BxS, skip_BxS, end_BxS


def _forward_backward(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL,
                      blank_id, unroll):
  """Per-utterance loss and its gradient with respect to the logits."""
  log_probs_BxUxV = jax.nn.log_softmax(logits_BxUxV)
  z_BxS, skip_BxS, end_BxS = _states(labels_BxL, label_paddings_BxL, blank_id)
  emit_BxUxS = jnp.take_along_axis(log_probs_BxUxV, z_BxS[:, None, :], axis=2)
  valid_BxU = logit_paddings_BxU < 0.5
  # Beta of a state s reaches s + 2 only where s + 2 may skip.
  skip_next_BxS = jnp.concatenate([skip_BxS[:, 2:], jnp.zeros_like(skip_BxS[:, :2])], axis=1)
  alpha_start_BxS = jnp.where(jnp.arange(z_BxS.shape[1])[None] == 0, 0.0,
                              jnp.full(z_BxS.shape, LOG_ZERO))
  beta_end_BxS = jnp.where(end_BxS, 0.0, LOG_ZERO)

  def step(carry, xs):
    alpha_BxS, beta_BxS = carry
    emit_a_BxS, valid_a_B, emit_b_BxS, valid_b_B, last_b_B = xs
    alpha_next = emit_a_BxS + _logsumexp3(
        alpha_BxS, _shift(alpha_BxS, 1), jnp.where(skip_BxS, _shift(alpha_BxS, 2), LOG_ZERO))
    alpha_BxS = jnp.where(valid_a_B[:, None], alpha_next, alpha_BxS)
    beta_next = emit_b_BxS + _logsumexp3(
        beta_BxS, _shift(beta_BxS, -1), jnp.where(skip_next_BxS, _shift(beta_BxS, -2), LOG_ZERO))
    beta_next = jnp.where(last_b_B[:, None], emit_b_BxS + beta_end_BxS, beta_next)
    beta_BxS = jnp.where(valid_b_B[:, None], beta_next, LOG_ZERO)
    return (alpha_BxS, beta_BxS), (alpha_BxS, beta_BxS)

  emit_UxBxS = jnp.moveaxis(emit_BxUxS, 1, 0)
  valid_UxB = valid_BxU.T
  # The last position of each utterance, where a path must be in an end state.
  last_UxB = valid_UxB & ~jnp.concatenate([valid_UxB[1:], jnp.zeros_like(valid_UxB[:1])])
  _, (alpha_UxBxS, beta_reversed_UxBxS) = jax.lax.scan(
      step, (alpha_start_BxS, beta_end_BxS),
      (emit_UxBxS, valid_UxB, emit_UxBxS[::-1], valid_UxB[::-1], last_UxB[::-1]), unroll=unroll)
  beta_UxBxS = beta_reversed_UxBxS[::-1]

  last_BxS = alpha_UxBxS[-1]  # Padded positions carry alpha unchanged to the end.
  log_p_B = jax.nn.logsumexp(jnp.where(end_BxS, last_BxS, -jnp.inf), axis=1)
  occupancy_UxBxS = jnp.exp(alpha_UxBxS + beta_UxBxS - emit_UxBxS - log_p_B[None, :, None])
  # Sum the occupancy of the states of each token: a scatter-add over the vocabulary.
  one_hot_BxSxV = jax.nn.one_hot(z_BxS, logits_BxUxV.shape[2], dtype=logits_BxUxV.dtype)
  posterior_BxUxV = jnp.einsum('ubs,bsv->buv', occupancy_UxBxS, one_hot_BxSxV,
                               precision=jax.lax.Precision.HIGHEST)
  grad_BxUxV = valid_BxU[..., None] * (jnp.exp(log_probs_BxUxV) - posterior_BxUxV)
  return -log_p_B, grad_BxUxV


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _ctc(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL, blank_id, unroll):
  return _forward_backward(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL,
                           blank_id, unroll)[0]


def _ctc_fwd(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL, blank_id, unroll):
  # The residual is the gradient itself: the backward pass only scales it.
  return _forward_backward(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL,
                           blank_id, unroll)


def _ctc_bwd(blank_id, unroll, grad_BxUxV, cotangent_B):
  del blank_id, unroll
  return cotangent_B[:, None, None] * grad_BxUxV, None, None, None


_ctc.defvjp(_ctc_fwd, _ctc_bwd)


def ctc_loss(logits_BxUxV: Array, logit_paddings_BxU: Array, labels_BxL: Array,
             label_paddings_BxL: Array, *, blank_id: int = 0,
             unroll: Optional[int] = None) -> Array:
  """Per-utterance CTC loss, `-log p(labels | logits)`: `optax.ctc_loss`'s arguments and result.

  Args:
    logits_BxUxV: unnormalized scores per output position (the log-softmax is applied here).
    logit_paddings_BxU: 1.0 at output positions beyond an utterance (right-padded).
    labels_BxL: token ids, right-padded.
    label_paddings_BxL: 1.0 where `labels_BxL` is padding.
    blank_id: the blank token, by keyword.
    unroll: output positions per loop iteration of the scan (speed only; the result is the
      same for every value); None = `default_unroll()`.
  Returns:
    `[B]` the negative log-likelihood of each utterance's labels. Its gradient (reverse mode:
    a `jax.custom_vjp`) is exact and zero at padded positions; the labels and paddings get
    none.
  """
  if logits_BxUxV.ndim != 3 or labels_BxL.ndim != 2:
    raise ValueError(f'ctc_loss needs [B, U, V] logits and [B, L] labels, got shapes '
                     f'{logits_BxUxV.shape} and {labels_BxL.shape}.')
  unroll = default_unroll() if unroll is None else unroll
  if unroll < 1:
    raise ValueError(f'unroll must be >= 1, got {unroll}.')
  return _ctc(logits_BxUxV, logit_paddings_BxU, labels_BxL, label_paddings_BxL, blank_id, unroll)


def logit_paddings(output_lengths_B: Array, num_positions: int) -> Array:
  """`[B, U]` 1.0 at output positions beyond each utterance's output length."""
  return (jnp.arange(num_positions)[None] >= output_lengths_B[:, None]).astype(jnp.float32)


def batch_loss(logits_BxUxV: Array, logit_paddings_BxU: Array, labels_BxL: Array,
             label_paddings_BxL: Array, weights_B: Array, implementation: str = 'forward_backward',
             unroll: int = 0) -> Array:
  """Weighted CTC loss per label token of a batch: CTC per utterance, summed over the real rows
  (weight > 0) and divided by their total number of label tokens, so that the gradient scale
  does not depend on how many or how long the utterances of a bucket are.

  Args:
    logits_BxUxV: unnormalized scores; the CTC applies the log-softmax.
    logit_paddings_BxU: 1.0 at output positions beyond an utterance.
    labels_BxL: token ids (`vocab.encode`), padded.
    label_paddings_BxL: 1.0 where `labels_BxL` is padding.
    weights_B: 1 for real utterances, 0 for filler rows.
    implementation: 'forward_backward' (`ctc_loss`) or 'optax'
      (`optax.ctc_loss`); the same loss and gradient (`config.train.ctc`).
    unroll: `ctc_loss`'s positions per loop iteration (`config.train.ctc_unroll`); 0 =
      `default_unroll()`.
  Returns:
    `sum_b w_b ctc_b / sum_b w_b |labels_b|`.
  """
  if implementation == 'optax':
    per_utterance_B = optax.ctc_loss(logits_BxUxV, logit_paddings_BxU, labels_BxL,
                                     label_paddings_BxL, blank_id=vocab.BLANK)
  else:
    per_utterance_B = ctc_loss(logits_BxUxV, logit_paddings_BxU, labels_BxL,
                               label_paddings_BxL, blank_id=vocab.BLANK, unroll=unroll or None)
  tokens_B = jnp.sum(1.0 - label_paddings_BxL, axis=1)
  return jnp.sum(weights_B * per_utterance_B) / jnp.maximum(jnp.sum(weights_B * tokens_B), 1.0)
