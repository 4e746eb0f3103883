"""Alignment quality: greedy characters, character alignment, true spans and distances."""

import csv

import numpy as np
import pytest

from navai_jax.introspection import alignment_quality as aq
from navai_jax.recognizer import vocab
from navai_jax.configs import default

BLANK, SPACE = vocab.BLANK, 1


def _id(c: str) -> int:
  return vocab.TOKENS.index(c)


# Words "the" [1.00, 1.20), "cat" [1.20, 1.60), "ok" [1.60, 1.80) (no phonemes: word level).
TIMING = {
    'id': '1-2-0003',
    'words': [{'word': 'THE', 'start': 1.0, 'end': 1.2}, {'word': 'CAT', 'start': 1.2, 'end': 1.6},
              {'word': 'OK', 'start': 1.6, 'end': 1.8}],
    'phonemes': [{'phoneme': 'D', 'start': 1.0, 'end': 1.08},
                 {'phoneme': '@', 'start': 1.08, 'end': 1.2},
                 {'phoneme': 'k', 'start': 1.2, 'end': 1.3},
                 {'phoneme': "'a", 'start': 1.3, 'end': 1.5},
                 {'phoneme': 't', 'start': 1.5, 'end': 1.6}],
}


def test_greedy_characters_follow_ctc_and_repetition_tokens():
  tokens = [BLANK, _id('a'), _id('a'), BLANK, _id('<1>'), _id('b'), SPACE, _id('b'), _id('b')]
  text, char_of = aq.greedy_characters(np.array(tokens))
  # "a a" merge, "<1>" repeats the 'a' once, "b b" merge.
  assert text == 'aab b' == vocab.greedy_decode(np.eye(vocab.SIZE)[tokens])
  np.testing.assert_array_equal(char_of, [-1, 0, 0, -1, 1, 2, 3, 4, 4])


def test_character_spans_distribute_phonemes_over_letters():
  start, end, level = aq.character_spans('the cat ok', TIMING)
  # "the": 3 letters, 2 phonemes: t -> D, h -> D..@, e -> @.
  np.testing.assert_allclose(start[:3], [1.0, 1.0, 1.08])
  np.testing.assert_allclose(end[:3], [1.08, 1.2, 1.2])
  # "cat": one phoneme per letter; "ok": no phonemes, word level.
  np.testing.assert_allclose(start[4:7], [1.2, 1.3, 1.5])
  np.testing.assert_allclose(end[4:7], [1.3, 1.5, 1.6])
  np.testing.assert_allclose(start[8:], [1.6, 1.6])
  np.testing.assert_allclose(end[8:], [1.8, 1.8])
  np.testing.assert_array_equal(level, [0, 0, 0, -1, 0, 0, 0, -1, 1, 1])
  assert np.isnan(start[3]) and np.isnan(end[7])
  with pytest.raises(ValueError, match='lists the words'):
    aq.character_spans('the dog ok', TIMING)


def test_hand_made_utterance_gives_expected_spans_and_distances():
  config = default.get_config('tiny')
  # Greedy "tha caxt ok" for the reference "the cat ok": 'a' stands for the spoken 'e', 'x'
  # is an insertion. Letters sit at output positions 60.. (window start 2u - 101).
  tokens = np.full(80, BLANK)
  layout = {60: 't', 61: 't', 63: 'h', 64: 'a', 66: ' ', 67: 'c', 68: 'a', 69: 'x', 70: 't',
            72: ' ', 73: 'o', 74: 'k'}
  for u, c in layout.items():
    tokens[u] = SPACE if c == ' ' else _id(c)
  letters_u = [u for u, c in layout.items() if c != ' ']
  positions = np.full((80, 2), -1)
  positions[letters_u, 0] = 103  # aligned frame 2u + 2, at 16 ms * u + 32 ms
  positions[letters_u, 1] = 124  # 168 ms later
  scores = aq.score_utterance(tokens, positions, 'the cat ok', TIMING, config)
  np.testing.assert_array_equal(scores['letter'], [vocab.CHARACTERS.index(c) - 2
                                                   for c in 'ttha catok'.replace(' ', '')])
  np.testing.assert_array_equal(scores['level'], [0, 0, 0, 0, 0, 0, 0, 1, 1])
  np.testing.assert_allclose(scores['span_s'],
                             [[1.0, 1.08], [1.0, 1.08], [1.0, 1.2], [1.08, 1.2], [1.2, 1.3],
                              [1.3, 1.5], [1.5, 1.6], [1.6, 1.8], [1.6, 1.8]])
  np.testing.assert_allclose(scores['time_s'][:, 0],
                             [0.992, 1.008, 1.04, 1.056, 1.104, 1.12, 1.152, 1.2, 1.216])
  np.testing.assert_allclose(scores['distance_ms'][:, 0],
                             [8, 0, 0, 24, 96, 180, 348, 400, 384], atol=1e-6)
  np.testing.assert_allclose(scores['distance_ms'][:, 1],
                             [80, 96, 8, 24, 0, 12, 180, 232, 216], atol=1e-6)
  assert scores['unmatched'].sum() == 1 and scores['unmatched'][ord('x') - ord('a')] == 1

  tally = aq.empty_tally(2)
  aq.add_to_tally(tally, scores)
  rows = aq.quality_table(tally, ('none', 'shifted'))
  by = {(r['method'], r['letter'], r['level']): r for r in rows}
  assert by[('none', 'all', 'all')]['frames'] == 9
  assert by[('none', 'all', 'all')]['inside_share'] == pytest.approx(2 / 9)
  assert by[('none', 'all', 'all')]['median_ms'] == pytest.approx(96, abs=aq.BIN_MS)
  assert by[('shifted', 't', 'letter')]['median_ms'] == pytest.approx(96, abs=aq.BIN_MS)
  assert by[('shifted', 'all', 'word')]['frames'] == 2
  # 90th percentile of 0, 0, 8, 24, 96, 180, 348, 384, 400: rank 7.2, between 384 and 400.
  assert by[('none', 'all', 'all')]['p90_ms'] == pytest.approx(387.2, abs=aq.BIN_MS)


def test_histogram_quantiles_are_within_a_bin_of_the_exact_ones():
  rng = np.random.default_rng(0)
  for n in (1, 2, 7, 100, 1001):
    d = np.where(rng.random(n) < 0.3, 0.0, rng.exponential(60.0, n))
    hist = np.bincount(aq.distance_bins(d), minlength=aq.NUM_BINS)
    for q in (0.5, 0.9, 0.0, 1.0):
      assert abs(aq.histogram_quantile(hist, q) - np.quantile(d, q)) <= aq.BIN_MS
  assert np.isnan(aq.histogram_quantile(np.zeros(aq.NUM_BINS), 0.5))


def test_report_files(tmp_path):
  tally = aq.empty_tally(2)
  tally['histogram'][0, 0, 0, [0, 5, 9]] = [2, 1, 1]
  tally['histogram'][1, 19, 1, [0]] = [3]
  rows = aq.quality_table(tally, ('none', 'lrp_max'))
  aq.write_csv(rows, str(tmp_path / 'q.csv'))
  with open(tmp_path / 'q.csv') as f:
    read = list(csv.DictReader(f))
  assert len(read) == 2 * 27 * 3
  assert read[0] == {'method': 'none', 'letter': 'all', 'level': 'all', 'frames': '4',
                     'median_ms': '2.2', 'p90_ms': '7.3', 'inside_share': '0.5'}
  report = aq.markdown_report(rows, tally, ('none', 'lrp_max'))
  assert '| lrp_max | 3 | 0.0 | 0.0 | 100.0% | 0.0% |' in report
