"""Vocabulary: repetition tokens, round trips, greedy CTC, error rates."""

import numpy as np
import pytest

from navai_jax import metrics, vocab


def test_repetition_tokens():
  t = vocab.TOKENS
  assert [t[i] for i in vocab.encode('abbccc')] == ['a', 'b', '<1>', 'c', '<2>']
  assert [t[i] for i in vocab.encode('cccc')] == ['c', '<2>', 'c']


@pytest.mark.parametrize('text', ["abbccc", "hello world", "it's a  cool   book", "zzzzzzz", "a"])
def test_round_trip(text):
  assert vocab.decode(vocab.encode(text)) == ' '.join(text.split())


def test_unspellable():
  with pytest.raises(vocab.UnspellableError, match='empty'):
    vocab.encode('   ')
  with pytest.raises(vocab.UnspellableError, match='outside'):
    vocab.encode('costs 5 euro')


def test_greedy_decode_merges_repeats_and_blanks():
  ids = [0, 3, 3, 0, 4, 0, 4, 29, 1, 1, 5]  # a a _ b _ b <1> ' ' ' ' c
  logits = np.eye(vocab.SIZE)[ids]
  assert vocab.greedy_decode(logits) == 'abbb c'
  assert vocab.greedy_decode(logits, length=3) == 'a'


def test_error_rates():
  r = metrics.error_rates(['the cat', 'a'], ['the bat', 'a'])
  assert r['ler'] == pytest.approx(1 / 8)
  assert r['wer'] == pytest.approx(1 / 3)
  assert metrics.edit_distance('kitten', 'sitting') == 3
