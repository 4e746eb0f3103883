"""Vocabulary: repetition tokens, round trips, greedy CTC, error rates."""

import numpy as np
import pytest

from navai_jax.recognizer import vocab


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


def test_transcripts_have_no_space_at_either_end_and_one_between_words():
  ids = [1, 3, 1, 0, 1, 4, 1]  # ' ' a ' ' _ ' ' b ' '
  assert vocab.decode(ids) == ' a  b '
  assert vocab.transcript(ids) == 'a b' == vocab.greedy_decode(np.eye(vocab.SIZE)[ids])
  assert vocab.transcript([1, 0, 1]) == '' == vocab.greedy_decode(np.eye(vocab.SIZE)[[1, 0, 1]])
  assert vocab.transcript(vocab.encode('a  cat ')) == 'a cat'


def test_ctc_runs_and_letter_names():
  tokens, run = vocab.ctc_runs(np.asarray([0, 3, 3, 0, 0, 4, 3]))
  np.testing.assert_array_equal(tokens, [0, 3, 0, 4, 3])
  np.testing.assert_array_equal(run, [0, 1, 1, 2, 2, 3, 4])
  assert vocab.ctc_collapse([0, 3, 3, 0, 0, 4, 3]) == [3, 4, 3]
  assert vocab.ctc_collapse([]) == []
  assert vocab.letter_id('a') == 3 and vocab.letter_id('z') == 28
  assert vocab.is_letter_name('q') and not vocab.is_letter_name('Q')
  assert not vocab.is_letter_name('ab') and not vocab.is_letter_name(3)
  with pytest.raises(ValueError, match="'ab' is not a letter"):
    vocab.letter_id('ab')


def test_ctc_length_counts_a_blank_between_equal_tokens():
  assert vocab.ctc_length(vocab.encode('abc')) == 3
  assert vocab.ctc_length([3, 3, 4, 4, 4]) == 8
  assert vocab.ctc_length([]) == 0
