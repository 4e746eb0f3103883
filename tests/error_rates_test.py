"""Edit distances, error rates and the Levenshtein alignment, against hand-counted answers."""

import itertools

import numpy as np
import pytest

from navai_jax.training import error_rates


def test_error_rates():
  r = error_rates.error_rates(['the cat', 'a'], ['the bat', 'a'])
  assert r['ler'] == pytest.approx(1 / 8)
  assert r['wer'] == pytest.approx(1 / 3)
  assert error_rates.edit_distance('kitten', 'sitting') == 3


def test_edit_table_equals_a_recursive_definition():
  def distance(a, b):
    if not a or not b:
      return len(a) + len(b)
    return min(distance(a[1:], b) + 1, distance(a, b[1:]) + 1,
               distance(a[1:], b[1:]) + (a[0] != b[0]))
  for a, b in itertools.product(['', 'a', 'ab', 'ba', 'abc', 'cab'], repeat=2):
    table = error_rates.edit_table(a, b)
    assert table[-1][-1] == distance(a, b) == error_rates.edit_distance(a, b)
    assert [row[0] for row in table] == list(range(len(a) + 1))


def test_align_marks_substitutions_and_insertions():
  np.testing.assert_array_equal(error_rates.align('tha caxt', 'the cat'),
                                [0, 1, 2, 3, 4, 5, -1, 6])
  np.testing.assert_array_equal(error_rates.align('cat', 'the cat'), [4, 5, 6])
  np.testing.assert_array_equal(error_rates.align('', 'abc'), [])
  # Every aligned pair is a match or substitution, in order, and the rest are insertions.
  ref_of = error_rates.align('kitten', 'sitting')
  assert list(ref_of) == [0, 1, 2, 3, 4, 5]


def test_edit_counts_split_the_distance():
  assert error_rates.edit_counts('cat', 'cut') == {'substitutions': 1, 'deletions': 0,
                                                   'insertions': 0}
  assert error_rates.edit_counts('the cat', 'cat') == {'substitutions': 0, 'deletions': 4,
                                                       'insertions': 0}
  assert error_rates.edit_counts('cat', 'cats!') == {'substitutions': 0, 'deletions': 0,
                                                     'insertions': 2}
  rng = np.random.default_rng(0)
  for _ in range(50):
    ref, hyp = (''.join(rng.choice(list('abc '), rng.integers(0, 9))) for _ in range(2))
    counts = error_rates.edit_counts(ref, hyp)
    assert sum(counts.values()) == error_rates.edit_distance(ref, hyp), (ref, hyp)
    assert counts['deletions'] - counts['insertions'] == len(ref) - len(hyp)


def test_rates_of_any_group_are_sums_of_pair_counts():
  """Rates from each pair's counts, summed over any subset, equal the rates by their formula."""
  rng = np.random.default_rng(1)
  pairs = [tuple(' '.join(''.join(rng.choice(list('ab'), rng.integers(1, 4)))
                          for _ in range(rng.integers(1, 4))) for _ in range(2))
           for _ in range(30)]
  counts = [error_rates.pair_counts(r, h) for r, h in pairs]
  for subset in (range(30), range(0, 30, 3), [7]):
    refs, hyps = zip(*[pairs[k] for k in subset])
    letter_errors = sum(error_rates.edit_distance(r, h) for r, h in zip(refs, hyps))
    word_errors = sum(error_rates.edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    expected = {'ler': letter_errors / sum(len(r) for r in refs),
                'wer': word_errors / sum(len(r.split()) for r in refs)}
    assert error_rates.rates_of(counts[k] for k in subset) == expected
    assert error_rates.error_rates(refs, hyps) == expected
  assert error_rates.rates_of([]) == {'ler': 0.0, 'wer': 0.0}
