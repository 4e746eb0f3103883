"""Clustering scores: NMI and ARI against their definitions and known values; 1.0 on profiles
built to match the categories, chance level on profiles that ignore them; clear errors."""

import itertools
import json

import numpy as np
import pytest

from navai_jax.introspection import phoneme_clusters


def _mutual_information_by_definition(a, b):
  n = len(a)
  mi = 0.0
  for x in set(a):
    for y in set(b):
      joint = sum(1 for i in range(n) if a[i] == x and b[i] == y) / n
      if joint:
        mi += joint * np.log(joint / (a.count(x) / n * b.count(y) / n))
  entropy = lambda v: -sum(v.count(x) / n * np.log(v.count(x) / n) for x in set(v))
  return mi / ((entropy(a) + entropy(b)) / 2)


def _adjusted_rand_by_pairs(a, b):
  """Hubert & Arabie's index from the pair counts of all item pairs."""
  pairs = list(itertools.combinations(range(len(a)), 2))
  both = sum(1 for i, j in pairs if a[i] == a[j] and b[i] == b[j])
  in_a = sum(1 for i, j in pairs if a[i] == a[j])
  in_b = sum(1 for i, j in pairs if b[i] == b[j])
  expected = in_a * in_b / len(pairs)
  return (both - expected) / ((in_a + in_b) / 2 - expected)


def test_scores_equal_their_definitions_and_known_values():
  assert phoneme_clusters.normalized_mutual_information([0, 0, 1, 1], [0, 0, 1, 2]) == (
      pytest.approx(0.8))
  assert phoneme_clusters.adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
  assert phoneme_clusters.normalized_mutual_information([1, 1, 2], ['x', 'x', 'y']) == 1.0
  assert phoneme_clusters.adjusted_rand_index([1, 1, 2], ['x', 'x', 'y']) == 1.0
  rng = np.random.default_rng(0)
  for _ in range(5):
    a, b = rng.integers(0, 4, 30).tolist(), rng.integers(0, 3, 30).tolist()
    assert phoneme_clusters.normalized_mutual_information(a, b) == pytest.approx(
        _mutual_information_by_definition(a, b))
    assert phoneme_clusters.adjusted_rand_index(a, b) == pytest.approx(
        _adjusted_rand_by_pairs(a, b))


def test_profiles_built_to_match_the_categories_score_one():
  rng = np.random.default_rng(1)
  categories = [c for c in phoneme_clusters.CATEGORIES for _ in range(6)]
  prototypes = {c: rng.normal(size=200) for c in phoneme_clusters.CATEGORIES}
  profiles = np.stack([prototypes[c] + 0.2 * rng.normal(size=200) for c in categories])
  s = phoneme_clusters.score_clustering(profiles, categories, permutations=200)
  assert s['nmi'] == pytest.approx(1.0) and s['ari'] == pytest.approx(1.0)
  assert s['nmi_p'] == s['ari_p'] == pytest.approx(1 / 201)
  assert s['nmi_chance_95'] < 0.6 and abs(s['ari_chance']) < 0.05
  assert len(set(s['clusters'])) == 5


def test_profiles_that_ignore_the_categories_score_chance():
  rng = np.random.default_rng(2)
  categories = [c for c in phoneme_clusters.CATEGORIES for _ in range(8)]
  nmi, ari, chance = [], [], []
  for seed in range(10):
    profiles = np.random.default_rng(seed).normal(size=(len(categories), 100))
    s = phoneme_clusters.score_clustering(profiles, list(rng.permutation(categories)), permutations=100,
                               seed=seed)
    nmi.append(s['nmi'])
    ari.append(s['ari'])
    chance.append(s['nmi_chance'])
  assert abs(np.mean(ari)) < 0.05
  assert abs(np.mean(nmi) - np.mean(chance)) < 0.05


def test_category_maps_are_checked(tmp_path):
  phoneme_clusters.check_categories(['a', 't', ';'], phoneme_clusters.ESPEAK_ENGLISH)
  with pytest.raises(ValueError, match='leaves 2 phoneme class.*unassigned: q!, zz'):
    phoneme_clusters.check_categories(['a', 'q!', 'zz'], phoneme_clusters.ESPEAK_ENGLISH)
  path = tmp_path / 'c.json'
  path.write_text(json.dumps({'a': 'vowel', 't': 'plosive', ';': None}))
  assert phoneme_clusters.read_categories(str(path))[';'] is None
  path.write_text('["a", "vowel"]')
  with pytest.raises(ValueError, match='must hold one JSON object'):
    phoneme_clusters.read_categories(str(path))
  path.write_text('{"a": ')
  with pytest.raises(ValueError, match='not valid JSON'):
    phoneme_clusters.read_categories(str(path))
  with pytest.raises(ValueError, match='does not exist'):
    phoneme_clusters.read_categories(str(tmp_path / 'missing.json'))
  assert set(phoneme_clusters.ESPEAK_ENGLISH.values()) == set(phoneme_clusters.CATEGORIES) | {
      None}
