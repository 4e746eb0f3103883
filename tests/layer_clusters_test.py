"""Where phonemes form, end to end: the clustering of the pass's profiles, recomputed here."""

import json
import os

import ml_collections
import numpy as np
import pytest

from navai_jax.introspection import layer_profiles
from navai_jax.introspection import phoneme_clusters
from navai_jax.recognizer import vocab
from navai_jax.stages import layer_clusters


def test_layers_clusters_the_profiles_of_the_navai_pass(stage_run, tmp_path, write_split):
  root, config, variables = stage_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.navai.layers = (1, 5, 11, 12)
  # Utterances whose letters (phonemes here) sound until the last frame that has a window.
  rng = np.random.default_rng(1)
  texts = ['hello you cat sat on a dog bed', 'the dog sat by a good old cat', 'a cat and a dog',
           'go to bed you old dog', 'tell us a good tale', 'such a hot day today']
  write_split(tmp_path / 'corpus', 'dev', texts, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=40000)).astype(np.float32))
  config.data.source = f'folder:{tmp_path / "corpus"}'
  with pytest.raises(ValueError, match=r'leaves 2 phoneme class\(es\) unassigned: c, o'):
    layer_clusters.run(config, variables, 7, str(tmp_path / 'refused'), workdir=str(root),
                       navai_dir=str(tmp_path / 'navai'))
  categories = {**{c: 'vowel' for c in 'aeiou'}, **{c: 'plosive' for c in 'bcdgt'},
                **{c: 'fricative' for c in 'fsvhz'}, **{c: 'nasal' for c in 'mn'},
                **{c: 'approximant' for c in 'lrwy'}}
  (tmp_path / 'categories.json').write_text(json.dumps(categories))
  config.layer_clusters.categories = str(tmp_path / 'categories.json')
  out = tmp_path / 'layers'
  found = layer_clusters.run(config, variables, 7, str(out), workdir=str(root),
                             navai_dir=str(tmp_path / 'navai'))
  saved = np.load(tmp_path / 'navai' / 'layers_dev.npz')
  assert list(saved['layers']) == [1, 5, 11, 12]
  # The pass ran for its arrays: no figures, no sounds (the navai stage draws them).
  assert (tmp_path / 'navai' / 'navai_dev.npz').exists()
  assert not list((tmp_path / 'navai').glob('*.png'))
  assert not (tmp_path / 'navai' / 'sound').exists()
  names = list(saved['alignments'])
  # The pass's alignments carried to the layers, and the gradient's (`layer_profiles_test`).
  assert names == ['none', 'gradient_max', 'lrp_max']
  assert [(r['layer'], r['alignment']) for r in found['rows']] == [
      (l, n) for l in (1, 5, 11, 12) for n in names]
  # Every score is the clustering of the saved profiles, recomputed here.
  classes = [str(c) for c in saved['phoneme_classes']]
  for row in found['rows'][::3]:
    a = names.index(row['alignment'])
    count = saved[f'layer{row["layer"]}_phoneme_count'][a]
    keep = [y for y in range(len(classes)) if count[y] >= 2]
    profiles = layer_profiles.contrastive_profiles(layer_profiles.Sums(
        count[keep], saved[f'layer{row["layer"]}_phoneme_total'][a][keep]))['contrastive']
    again = phoneme_clusters.score_clustering(profiles.reshape(len(keep), -1),
                                   [categories[classes[y]] for y in keep], permutations=20)
    assert row['nmi'] == pytest.approx(again['nmi'], abs=1e-4)
    assert row['ari'] == pytest.approx(again['ari'], abs=1e-4)
    assert row['classes'] == len(keep) and 0 <= row['nmi'] <= 1
  # A second run reads the pass's profiles instead of running it again.
  made = os.path.getmtime(tmp_path / 'navai' / 'layers_dev.npz')
  letter = vocab.LETTERS[int(np.argmax(saved['layer5_letter_count'][0]))]
  config.layer_clusters.letters = (letter,)
  layer_clusters.run(config, variables, 7, str(out), workdir=str(root),
                     navai_dir=str(tmp_path / 'navai'))
  assert os.path.getmtime(tmp_path / 'navai' / 'layers_dev.npz') == made
  for name in ('clustering.csv', 'clustering.json', 'clustering.md', 'clustering_by_layer.png',
               'dendrogram_layer1.png', 'dendrogram_layer11.png', 'profiles_layer5.png',
               f'channels_{letter}_layer5.png'):
    assert (out / name).exists(), name
  assert len((out / 'clustering.csv').read_text().splitlines()) == 1 + len(found['rows'])
  config.layer_clusters.figure_layer = 3
  with pytest.raises(ValueError, match=r'Layer\(s\) 3 of config.layer_clusters are not profiled'):
    layer_clusters.run(config, variables, 7, str(out), workdir=str(root),
                       navai_dir=str(tmp_path / 'navai'))


def test_layers_without_phoneme_times_says_so(stage_run, tmp_path, write_split):
  root, config, variables = stage_run
  config = ml_collections.ConfigDict(config.to_dict())
  write_split(tmp_path / 'untimed', 'dev', ['cat sat', 'a dog'],
              audio=lambda i, text: np.zeros(32000, np.float32) + 0.01 * i)
  config.data.source = f'folder:{tmp_path / "untimed"}'
  config.navai.layers = (1,)
  config.layer_clusters.dendrogram_layers = (1,)
  config.layer_clusters.figure_layer = 1
  with pytest.raises(ValueError, match='Clustering phonemes needs phoneme times'):
    layer_clusters.run(config, variables, 7, str(tmp_path / 'layers'), workdir=str(root),
                       navai_dir=str(tmp_path / 'navai'))
  # A folder without audio, or a transcript without its FLAC, is named as such, not as a
  # lack of phoneme times.
  (tmp_path / 'empty' / 'dev').mkdir(parents=True)
  next((tmp_path / 'untimed').rglob('*.flac')).unlink()
  for folder, problem in ((tmp_path / 'empty', 'No split folders with .flac and .trans.txt'),
                          (tmp_path / 'untimed', r'line without audio; .*\.flac is missing')):
    config.data.source = f'folder:{folder}'
    with pytest.raises(ValueError, match=problem):
      layer_clusters.run(config, variables, 7, str(tmp_path / 'layers'), workdir=str(root),
                         navai_dir=str(tmp_path / 'navai'))
