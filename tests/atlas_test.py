"""The channel atlas end to end: every letter's frames split over its channels' conditional
NAvAI without loss, a card and sounds per chosen channel, bad settings refused."""

import ml_collections
import numpy as np
import pytest
import soundfile as sf

from navai_jax.introspection import channel_labels
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.stages import atlas


def test_the_atlas_splits_each_letter_over_its_channels(stage_run, tmp_path):
  root, config, variables = stage_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.atlas.layers = (6,)
  config.atlas.channels_per_letter = 8  # every channel of layer 6: no frame is left out
  config.atlas.crops = 1
  config.atlas.sounds = 1
  config.atlas.max_utterances = 0
  config.atlas.method = 'none'
  out = tmp_path / 'atlas'
  found = atlas.run(config, variables, 7, str(out), workdir=str(root),
                    navai_dir=str(tmp_path / 'navai'))
  saved = np.load(out / 'atlas_layer6.npz')
  count, total = saved['conditional_count'], saved['letter_count']
  assert total.sum() > 20
  # Each frame is carried most by one channel: the channels' frames are the letter's frames,
  # and their patterns, weighted by their frames, add up to the letter's pattern.
  np.testing.assert_array_equal(count.sum(1), total)
  for y in np.flatnonzero(total):
    weighted = sum(count[y, s] * saved['conditional_pattern'][y, s]
                   for s in range(8) if count[y, s])
    np.testing.assert_allclose(weighted, total[y] * saved['letter_pattern'][y], rtol=1e-3,
                               atol=1e-3 * total[y])
  concepts_saved = np.load(tmp_path / 'navai' / 'concepts_dev.npz')
  np.testing.assert_array_equal(saved['channels'], atlas.letter_channels(concepts_saved, 6, 8))
  # A card per channel that carries a letter, and the sound of its best references, as long
  # as the unit's receptive field.
  specs = model.layer_specs(config.model)
  _, span = channel_labels.unit_field(specs, 6, 0)
  c = config.features
  for channel in found['layers'][6]['channels']:
    assert (out / 'cards' / f'layer6_channel{channel}.png').exists()
    for kind in ('relevance', 'activation'):
      audio, rate = sf.read(out / 'sound' / f'layer6_channel{channel}_{kind}_1.wav')
      assert rate == c.sample_rate and len(audio) == (span - 1) * c.hop + c.window
  text = (out / 'atlas.md').read_text()
  assert all(f'| {vocab.LETTERS[y]} | {total[y]} |' in text for y in np.flatnonzero(total))
  # Bad settings: one line each.
  config.atlas.layers = (5,)
  with pytest.raises(ValueError, match=r'Atlas layer\(s\) 5 are not among'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=str(tmp_path / 'navai'))
  config.atlas.layers = (6,)
  config.atlas.channels_per_letter = 9
  with pytest.raises(ValueError, match='layer 6 has 8 channels'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=str(tmp_path / 'navai'))
  config.atlas.channels_per_letter = 2
  config.navai.references = 0
  with pytest.raises(ValueError, match='navai.references'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=str(tmp_path / 'navai'))
