"""Channel labels: a unit's receptive field is exactly the input it reads; a channel whose
references fall on one phoneme (or category, or silence) far above chance gets that label, one
whose references are spread gets none; random frames sample speech by its durations."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import channel_labels
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.speech import phonemes


def test_a_unit_reads_exactly_its_receptive_field(tiny_variables):
  config, variables = tiny_variables(0, jnp.float32)
  layers = network.layers_from_variables(config, variables)
  specs = model.layer_specs(config.model)
  window = np.random.default_rng(0).normal(size=(model.RECEPTIVE_FIELD, config.features.num_mels))
  _, pre = network.forward(layers, jnp.asarray(window, jnp.float32))
  for layer, unit in ((1, 3), (4, 5), (8, 20), (11, 0)):
    first, width = channel_labels.unit_field(specs, layer, unit)
    for frame, inside in ((first - 1, False), (first, True), (first + width - 1, True),
                          (first + width, False)):
      if not 0 <= frame < len(window):
        continue
      changed = window.copy()
      changed[frame] += 1.0
      _, other = network.forward(layers, jnp.asarray(changed, jnp.float32))
      moved = not np.array_equal(pre[layer - 1][unit], other[layer - 1][unit])
      # Outside the field nothing reaches the unit; inside, a frame at the field's edge
      # reaches it through one unit per layer, which ReLUs may silence in the deeper layers.
      assert moved == inside or (inside and layer > 4), (layer, unit, frame)
  # The last layers' single unit sees the whole window; its centre is the frame's centre.
  assert channel_labels.unit_field(specs, 11, 0) == (0, model.RECEPTIVE_FIELD)
  assert channel_labels.unit_centres(specs, 11, 10, 0) == model.window_start(specs, 10) + 103


def test_phoneme_at_and_random_frames_follow_the_true_times(tmp_path):
  timing = {'phonemes': [{'phoneme': 's', 'start': 0.1, 'end': 0.4},
                         {'phoneme': "'aa", 'start': 0.5, 'end': 1.3}]}
  (tmp_path / 'u.timing.json').write_text(json.dumps(timing))
  names = channel_labels.phoneme_at(timing, np.array([0.0, 0.2, 0.45, 0.6, 2.0]))
  assert list(names) == ['silence', 's', 'silence', 'aa', 'silence']
  drawn = channel_labels.random_phonemes({'u': str(tmp_path / 'u.timing.json')}, 6000, seed=1)
  # Between the first start and the last end: 0.3 s of s, 0.1 s pause, 0.8 s of aa.
  for name, seconds in (('s', 0.3), ('silence', 0.1), ('aa', 0.8)):
    assert abs(np.mean(drawn == name) - seconds / 1.2) < 0.02
  with pytest.raises(ValueError, match='true phoneme times'):
    channel_labels.random_phonemes({})


RANDOM = np.array(['s'] * 5 + ['z'] * 5 + ['t'] * 10 + ['aa'] * 40 + ['iy'] * 30 +
                  ['silence'] * 10, dtype=object)


@pytest.mark.parametrize('references, label, level', [
    (['s'] * 12 + ['aa'] * 4, '/s/', 'phoneme'),  # 75% /s/ against 5% at random
    (['s'] * 6 + ['z'] * 6 + ['aa'] * 4, 'fricative', 'category'),  # no phoneme is half
    (['silence'] * 10 + ['aa'] * 6, 'silence', 'category'),
    (['aa'] * 6 + ['iy'] * 5 + ['t'] * 2 + ['s'] * 1 + ['silence'] * 2, 'no clear label', 'none'),
    (['aa'] * 9 + ['iy'] * 7, 'no clear label', 'none'),  # all vowels, as often as at random
    (['s'] * 2 + [''] * 14, 'no clear label', 'none'),  # too few timed references
])
def test_labels_need_a_clear_majority_far_above_chance(references, label, level):
  base = channel_labels.random_shares(RANDOM, phonemes.CATEGORIES)
  found = channel_labels.label_channel(references, base, phonemes.CATEGORIES)
  assert (found['label'], found['level']) == (label, level)
  assert found['references'] == sum(1 for r in references if r)
  if level != 'none':
    assert found['share'] >= 0.5 and found['lift'] >= 2 and found['p'] < 0.01


def test_letters_carried_by_labelled_channels():
  share = np.array([[0.5, -0.25, 0.25], [0.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
  carried = channel_labels.carried_by_labelled(share, np.array([3, 0, 2]),
                                               np.array([True, False, True]))
  np.testing.assert_allclose(carried[[0, 2]], [0.75, 0.9])
  assert np.isnan(carried[1])
