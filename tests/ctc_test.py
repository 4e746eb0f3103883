"""The forward-backward CTC: the sum over alignments, optax's loss and gradient, edge cases."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from navai_jax.recognizer import ctc


def random_batch(seed: int, num_classes: int = 6):
  """Five utterances of different lengths, labels with repeats, one empty transcript."""
  rng = np.random.default_rng(seed)
  B, U, L = 5, 40, 10
  logits = rng.normal(size=(B, U, num_classes)).astype(np.float32) * 3
  labels = rng.integers(1, 4, size=(B, L))  # Three letters: many repeats.
  output_lengths = np.array([40, 31, 22, 17, 40])
  label_lengths = np.array([10, 9, 5, 0, 1])
  logit_paddings = (np.arange(U)[None] >= output_lengths[:, None]).astype(np.float32)
  label_paddings = (np.arange(L)[None] >= label_lengths[:, None]).astype(np.float32)
  return (jnp.asarray(logits), jnp.asarray(logit_paddings), jnp.asarray(labels),
          jnp.asarray(label_paddings))


def brute_force_loss(logits: np.ndarray, labels: list[int], blank: int) -> float:
  """-log of the sum over every path of tokens that collapses to `labels` (merge, drop blank)."""
  log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float64)))
  total = 0.0
  for path in itertools.product(range(logits.shape[1]), repeat=logits.shape[0]):
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    if [k for k in merged if k != blank] == labels:
      total += np.exp(sum(log_probs[t, k] for t, k in enumerate(path)))
  return -np.log(total)


@pytest.mark.parametrize('labels,blank', [([1, 2], 0), ([1, 1], 0), ([2], 0), ([], 0),
                                          ([0, 2, 2], 1)])
def test_loss_is_minus_log_of_the_sum_over_alignments(labels, blank):
  rng = np.random.default_rng(len(labels) + 10 * blank)
  logits = rng.normal(size=(6, 3))
  with jax.enable_x64(True):
    padded = np.array(labels + [1] * (3 - len(labels)))
    paddings = (np.arange(3) >= len(labels)).astype(np.float64)
    loss = ctc.ctc_loss(jnp.asarray(logits[None]), jnp.zeros((1, 6)), jnp.asarray(padded[None]),
                        jnp.asarray(paddings[None]), blank_id=blank)
    np.testing.assert_allclose(float(loss[0]), brute_force_loss(logits, labels, blank),
                               rtol=1e-10)


def optax_ctc(*args, **kwargs):
  """`optax.ctc_loss` with its one-hot gather at full precision: at the default precision it
  is TF32 on recent NVIDIA GPUs, and the reference would be off by ~2e-3 in the gradient."""
  with jax.default_matmul_precision('highest'):
    return optax.ctc_loss(*args, **kwargs)


@pytest.mark.parametrize('unroll', [1, 3, 8])
def test_loss_and_gradient_equal_optax(unroll):
  logits, logit_paddings, labels, label_paddings = random_batch(0)
  weights = jnp.asarray([0.5, 1.0, 2.0, 1.5, 0.7])
  ours = lambda x: ctc.ctc_loss(x, logit_paddings, labels, label_paddings, blank_id=0,
                                unroll=unroll)
  reference = lambda x: optax_ctc(x, logit_paddings, labels, label_paddings, blank_id=0)
  np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-5)
  grad = jax.grad(lambda x: jnp.sum(weights * ours(x)))(logits)
  grad_reference = jax.grad(lambda x: jnp.sum(weights * reference(x)))(logits)
  np.testing.assert_allclose(grad, grad_reference, atol=2e-4 * float(jnp.max(jnp.abs(grad))))


def test_gradient_matches_finite_differences():
  logits, _, labels, _ = random_batch(1)
  with jax.enable_x64(True):
    x = jnp.asarray(logits, jnp.float64)[:3, :25]
    args = (jnp.where(jnp.arange(25)[None] >= jnp.array([25, 20, 17])[:, None], 1.0, 0.0),
            labels[:3, :6], jnp.where(jnp.arange(6)[None] >= jnp.array([6, 4, 5])[:, None],
                                      1.0, 0.0))
    f = lambda x: jnp.sum(jnp.array([1.0, 0.3, 2.0]) * ctc.ctc_loss(x, *args, blank_id=0))
    grad = jax.grad(f)(x)
    rng = np.random.default_rng(2)
    for _ in range(12):
      direction = jnp.asarray(rng.normal(size=x.shape))
      eps = 1e-6
      numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
      np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(numeric), rtol=1e-6)


def test_padded_positions_get_no_gradient_and_other_blank_ids_work():
  logits, logit_paddings, labels, label_paddings = random_batch(3)
  grad = jax.grad(lambda x: jnp.sum(ctc.ctc_loss(x, logit_paddings, labels, label_paddings,
                                                 blank_id=5)))(logits)
  assert float(jnp.max(jnp.abs(jnp.where(logit_paddings[..., None] > 0, grad, 0.0)))) == 0.0
  # The gradient of a normalized score sums to zero over the vocabulary at every position.
  np.testing.assert_allclose(jnp.sum(grad, axis=2), 0.0, atol=1e-4)
  np.testing.assert_allclose(
      ctc.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=5),
      optax_ctc(logits, logit_paddings, labels, label_paddings, blank_id=5), rtol=1e-5)


def test_a_transcript_longer_than_the_output_costs_a_finite_large_loss():
  logits = jnp.zeros((1, 4, 5))
  labels = jnp.array([[1, 2, 3, 4, 1]])  # Five labels, four positions.
  loss, grad = jax.value_and_grad(lambda x: ctc.ctc_loss(
      x, jnp.zeros((1, 4)), labels, jnp.zeros((1, 5)), blank_id=0)[0])(logits)
  assert float(loss) > 1e4
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_bad_shapes_and_unroll_are_named():
  with pytest.raises(ValueError, match='shapes'):
    ctc.ctc_loss(jnp.zeros((4, 5)), jnp.zeros((1, 4)), jnp.zeros((1, 2), int), jnp.zeros((1, 2)))
  with pytest.raises(ValueError, match='unroll'):
    ctc.ctc_loss(jnp.zeros((1, 4, 5)), jnp.zeros((1, 4)), jnp.zeros((1, 2), int),
                 jnp.zeros((1, 2)), unroll=0)
