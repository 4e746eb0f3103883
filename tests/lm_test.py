"""Tests of the token language model and the CTC prefix beam search."""

import itertools
import math

import numpy as np
import pytest

from navai_jax.recognizer import lm
from navai_jax.recognizer import vocab

SENTENCES = ['the cat sat', 'the dog sat on the mat', 'a cat', 'bees buzz', "it's off"]
TOKENS = [*range(1, vocab.SIZE), lm.END]  # what can follow a history


@pytest.mark.parametrize('order', [1, 2, 4])
def test_probabilities_of_every_history_sum_to_one(order):
  model = lm.fit([vocab.encode(s) for s in SENTENCES], order=order)
  histories = [[], vocab.encode('the'), vocab.encode('the c'), vocab.encode('zzq'),
               vocab.encode('bees buzz')]
  for history in histories:
    total = sum(math.exp(lm.log_prob(model, history, token)) for token in TOKENS)
    assert total == pytest.approx(1.0, abs=1e-12), (order, history)


def test_kneser_ney_by_its_formula():
  a, b, c = vocab.encode('abc')
  model = lm.fit([[a, b], [a, c]], order=2, discount=0.6)
  d = 0.6
  # Unigrams by continuation: 'a' follows END, 'b' and 'c' follow 'a', END follows 'b' and 'c':
  # 5 kinds of bigram, 4 kinds of token.
  p_b = ((1 - d) + d * 4 / vocab.SIZE) / 5
  p_end = ((2 - d) + d * 4 / vocab.SIZE) / 5
  assert math.exp(lm.log_prob(model, [a], b)) == pytest.approx((1 - d + d * 2 * p_b) / 2)
  # After 'b' only END was seen; after 'c' too; 'z' was never a history: the unigrams.
  assert math.exp(lm.log_prob(model, [a, b], lm.END)) == pytest.approx(1 - d + d * 1 * p_end)
  z = vocab.encode('z')[0]
  assert math.exp(lm.log_prob(model, [z], b)) == pytest.approx(p_b)
  # The start of a transcript is a history of END: 'a' came first both times.
  p_a = ((1 - d) + d * 4 / vocab.SIZE) / 5
  assert math.exp(lm.log_prob(model, [], a)) == pytest.approx((2 - d + d * 1 * p_a) / 2)


def test_a_bounded_memo_changes_no_probability(monkeypatch):
  histories = [[]] + [vocab.encode(h) for h in ('the', 'the c', 'bees buzz', 'zzq')]
  full = lm.fit([vocab.encode(s) for s in SENTENCES], order=4)
  expected = [lm.log_prob(full, h, t) for h in histories for t in TOKENS]
  monkeypatch.setattr(lm, 'MEMO_SIZE', 5)
  small = lm.fit([vocab.encode(s) for s in SENTENCES], order=4)
  assert [lm.log_prob(small, h, t) for h in histories for t in TOKENS] == expected
  assert 0 < len(small._memo) <= 5  # pylint: disable=protected-access
  assert len(full._memo) > 5  # pylint: disable=protected-access


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match='order >= 1'):
    lm.fit([[3]], order=0)
  with pytest.raises(ValueError, match='at least one transcript'):
    lm.fit([])
  with pytest.raises(ValueError, match='beam must be >= 1'):
    lm.beam_search(np.zeros((2, vocab.SIZE)), beam=0)


def _collapse(path):
  labels = [k for k, _ in itertools.groupby(path)]
  return tuple(k for k in labels if k != 0)


@pytest.mark.parametrize('seed', range(4))
def test_without_a_model_the_search_finds_the_most_probable_labelling(seed):
  """Against every alignment summed by brute force: with no pruning and a beam that keeps
  every prefix, prefix search is exact."""
  rng = np.random.default_rng(seed)
  logits_UxV = rng.normal(scale=2.0, size=(5, 4))
  logprobs_UxV = logits_UxV - np.log(np.exp(logits_UxV).sum(-1, keepdims=True))
  totals = {}
  for path in itertools.product(range(4), repeat=5):
    labels = _collapse(path)
    p = math.exp(sum(logprobs_UxV[u, v] for u, v in enumerate(path)))
    totals[labels] = totals.get(labels, 0.0) + p
  best = max(totals, key=totals.get)
  found = lm.beam_search(logprobs_UxV, beam=10_000, prune=-np.inf)
  assert tuple(found) == best
  assert sorted(totals.values())[-2] < totals[best]  # not a tie


def test_the_model_decides_what_the_sound_leaves_open():
  """A network built to be unsure between 'cat' and 'cot': the model of the transcripts
  picks the spelling it has seen, and greedy decoding cannot."""
  c, a, o, t = vocab.encode('caot')
  probs_UxV = np.full((7, vocab.SIZE), 1e-4)
  for u, tokens in enumerate([[c], [vocab.BLANK], [a, o], [vocab.BLANK], [t], [vocab.BLANK],
                              [vocab.BLANK]]):
    probs_UxV[u, tokens] = 1.0 / len(tokens)
  probs_UxV[2, o] *= 1.01  # the sound leans to 'cot'
  logprobs_UxV = np.log(probs_UxV / probs_UxV.sum(-1, keepdims=True))
  assert vocab.greedy_decode(logprobs_UxV) == 'cot'
  for seen in ('cat', 'cot'):
    model = lm.fit([vocab.encode(s) for s in [seen] * 3 + ['a tiny cab']], order=3)
    found = lm.beam_search(logprobs_UxV, model, alpha=1.0, beta=0.0, beam=8)
    assert vocab.decode(found) == seen
  # With alpha 0 the model is not heard.
  assert vocab.decode(lm.beam_search(logprobs_UxV, model, alpha=0.0, beam=8)) == 'cot'
