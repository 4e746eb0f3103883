"""Timing files: found by utterance id, phoneme classes without stress or variant marks, the
phoneme sounding at every feature frame."""

import json

import numpy as np
import pytest

from navai_jax.speech import phoneme_times
from navai_jax.configs import default


def test_phoneme_classes_drop_stress_and_variant_marks():
  assert [phoneme_times.phoneme_class(p) for p in ("'a", ',O2', '@2', 'a#', 't#', 'i@3', "'i:", 'aI',
                                        '@L', 'n-', ';', "'0", ',0', '3', "'3:")] == [
      'a', 'O', '@', 'a', 't', 'i@', 'i:', 'aI', '@L', 'n', ';', '0', '0', '3', '3:']


def test_timings_are_found_by_utterance_id(tmp_path):
  config = default.get_config('tiny')
  chapter = tmp_path / 'dev' / '7' / '8'
  chapter.mkdir(parents=True)
  for utt in ('7-8-0001', '7-8-0002'):
    (chapter / f'{utt}.timing.json').write_text(json.dumps(
        {'phonemes': [{'phoneme': "'aI", 'start': 0.0, 'end': 0.1},
                      {'phoneme': 'i@3', 'start': 0.1, 'end': 0.2}]}))
  config.data.source = f'folder:{tmp_path}'
  found = phoneme_times.find_timings(config)
  assert found == {u: str(chapter / f'{u}.timing.json') for u in ('7-8-0001', '7-8-0002')}
  assert phoneme_times.phoneme_inventory(found.values()) == ('aI', 'i@')
  config.data.source = 'tfds:librispeech'
  assert phoneme_times.find_timings(config) == {}
  assert phoneme_times.find_timings(config, str(tmp_path)) == found
  with pytest.raises(ValueError, match='Timing folder .*nowhere does not exist'):
    phoneme_times.find_timings(config, str(tmp_path / 'nowhere'))
  config.data.source = f'folder:{tmp_path / "gone"}'
  with pytest.raises(ValueError, match=r"Corpus folder \(config.data.source='.*gone'\) .* does "
                                       'not exist'):
    phoneme_times.find_timings(config)


def test_phoneme_track_marks_the_frames_each_phoneme_sounds_in():
  config = default.get_config('tiny')
  times = {'phonemes': [{'phoneme': "'a", 'start': 0.0, 'end': 0.1},
                        {'phoneme': 'x', 'start': 0.1, 'end': 0.2},  # not a class: -1
                        {'phoneme': 't#', 'start': 0.2, 'end': 0.3}]}
  track = phoneme_times.phoneme_track(times, ('a', 't'), 60, config)
  centre_s = (np.arange(60) * 128 + 256) / 16000
  want = np.where(centre_s < 0.1, 0, np.where((centre_s >= 0.2) & (centre_s < 0.3), 1, -1))
  np.testing.assert_array_equal(track, want)


def test_frame_targets_are_one_plus_the_arpabet_class_and_zero_between_phonemes():
  config = default.get_config('tiny')
  times = {'inventory': 'arpabet', 'timed': True,
           'phonemes': [{'phoneme': 'aa', 'start': 0.05, 'end': 0.1},
                        {'phoneme': 'x', 'start': 0.1, 'end': 0.2},  # not ARPAbet: no target
                        {'phoneme': 'zh', 'start': 0.25, 'end': 0.3}]}
  targets = phoneme_times.frame_targets(times, 60, config)
  centre_s = (np.arange(60) * 128 + 256) / 16000
  # 'aa' is the first of ARPAbet's 39, 'zh' the last.
  want = np.select([(centre_s >= 0.05) & (centre_s < 0.1), (centre_s >= 0.1) & (centre_s < 0.2),
                    (centre_s >= 0.25) & (centre_s < 0.3)], [1, -1, 39], 0)
  np.testing.assert_array_equal(targets, want)
  assert phoneme_times.NUM_TARGETS == 40 and {0, 1, 39, -1} <= set(targets.tolist())
  for other in ({**times, 'timed': False}, {**times, 'inventory': 'espeak'}):
    np.testing.assert_array_equal(phoneme_times.frame_targets(other, 60, config), -1)
