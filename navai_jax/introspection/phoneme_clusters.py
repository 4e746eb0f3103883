"""Where do phonemes form? Per-layer clustering of phoneme profiles against phonetic categories.

For one layer and alignment, the contrastive profiles of the phoneme classes
(`layer_profiles.contrastive_profiles`), flattened to vectors, are clustered hierarchically (average
linkage on correlation distance, `scipy.cluster.hierarchy`) and the tree is cut into as many
clusters as there are categories. The clustering is scored against the phonetic category of
each phoneme (vowel, plosive, fricative, nasal, approximant) with

* normalised mutual information, NMI = I(a; b) / ((H(a) + H(b)) / 2) (the arithmetic-mean
  normalisation; Vinh, Epps & Bailey, JMLR 2010), and
* the adjusted Rand index (Hubert & Arabie, J. Classification 1985),

and against a permutation baseline: the same scores with the categories shuffled over the
phonemes, which says how much agreement a clustering of this many classes into this many
clusters reaches by chance.
"""

import json
import os
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial import distance

from navai_jax.core import rules
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import moments
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.speech import phonemes

CATEGORIES = ('vowel', 'plosive', 'fricative', 'nasal', 'approximant')

# `config.layer_clusters`: this module's clustering and the figures of its stage.
RULES = {'layer_clusters': [
    ('alignment', *rules.one_of(layer_profiles.LAYER_ALIGNMENTS)),
    ('baseline', *rules.one_of(moments.BASELINES)),
    ('min_frames', *rules.at_least(1)), ('permutations', *rules.at_least(0)),
    ('dendrogram_layers', *rules.layer_numbers(model.NUM_LAYERS)),
    ('figure_layer', *rules.layer_number(model.NUM_LAYERS)),
    ('figure_phonemes', bool, 'phoneme classes'),
    ('letters', lambda v: bool(v) and all(vocab.is_letter_name(l) for l in v), 'letters a-z'),
    ('top_channels', *rules.at_least(1)), ('seed', *rules.at_least(0)),
]}

# eSpeak NG's English phoneme classes (`phoneme_times.phoneme_class`) by manner of articulation.
# Diphthongs and r-coloured vowels are vowels; the affricates tS, dZ count as fricatives (their
# release is a fricative); the syllabic @L counts as an approximant (a syllabic /l/); the glottal
# stop ? and the dental t[ are plosives. None leaves a class out of the clustering: eSpeak's ';'
# marks a linking (palatalised) transition, no speech sound of its own.
ESPEAK_ENGLISH = {
    **{p: 'vowel' for p in ('0', '3', '3:', '@', 'A:', 'A@', 'E', 'I', 'IR', 'O', 'O:', 'O@',
                            'OI', 'U', 'U@', 'V', 'VR', 'a', 'aI', 'aI@', 'aU', 'aa', 'e', 'e@',
                            'eI', 'i', 'i:', 'i@', 'o@', 'oU', 'u', 'u:', 'u@')},
    **{p: 'plosive' for p in ('p', 'b', 't', 'd', 'k', 'g', '?', 't[')},
    **{p: 'fricative' for p in ('f', 'v', 'T', 'D', 's', 'z', 'S', 'Z', 'h', 'x', 'tS', 'dZ')},
    **{p: 'nasal' for p in ('m', 'n', 'N')},
    **{p: 'approximant' for p in ('l', 'r', 'w', 'j', '@L')},
    ';': None,
}


def read_categories(path: str) -> dict[str, str | None]:
  """A phoneme -> category map from a JSON object file (null: leave the phoneme out of the
  clustering); '' gives ARPAbet's (`phonemes.CATEGORIES`, the corpus's inventory) and
  `ESPEAK_ENGLISH` (corpora made before it)."""
  if not path:
    return {**ESPEAK_ENGLISH, **phonemes.CATEGORIES}
  if not os.path.isfile(path):
    raise ValueError(f'Phoneme category file {path} does not exist.')
  try:
    with open(path) as f:
      categories = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'Phoneme category file {path} is not valid JSON: {e}') from None
  if not isinstance(categories, dict) or not all(
      isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in categories.items()):
    raise ValueError(f'Phoneme category file {path} must hold one JSON object mapping '
                     'phonemes to category names (or null), e.g. {"a": "vowel", "t": "plosive"}.')
  return categories


def check_categories(classes: Sequence[str], categories: Mapping[str, str | None]) -> None:
  """ValueError naming every phoneme class that `categories` leaves unassigned."""
  missing = [c for c in classes if c not in categories]
  if missing:
    raise ValueError(f'The phoneme category map leaves {len(missing)} phoneme class(es) '
                     f'unassigned: {", ".join(missing)}; give every phoneme of the corpus a '
                     'category, or null to leave it out '
                     '(--config.layer_clusters.categories=FILE.json).')


def labels_of(values: Sequence) -> np.ndarray:
  """Integer labels 0..K-1 of any hashable values, in order of first appearance."""
  index = {}
  return np.array([index.setdefault(v, len(index)) for v in values], np.int64)


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a, b = labels_of(a), labels_of(b)
  table = np.zeros((a.max() + 1, b.max() + 1), np.int64)
  np.add.at(table, (a, b), 1)
  return table


def normalized_mutual_information(a: Sequence, b: Sequence) -> float:
  """I(a; b) / ((H(a) + H(b)) / 2) of two labellings of the same items; 1.0 where both put
  every item in one group."""
  table = _contingency(np.asarray(a), np.asarray(b)).astype(np.float64)
  p = table / table.sum()
  pa, pb = p.sum(1), p.sum(0)
  entropy = lambda q: -np.sum(q[q > 0] * np.log(q[q > 0]))
  ha, hb = entropy(pa), entropy(pb)
  if ha == 0 and hb == 0:
    return 1.0
  nz = p > 0
  mi = np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz]))
  return float(max(mi, 0.0) / ((ha + hb) / 2))


def adjusted_rand_index(a: Sequence, b: Sequence) -> float:
  """The Rand index of two labellings corrected for chance (Hubert & Arabie): 1.0 for equal
  partitions, about 0 for independent ones."""
  table = _contingency(np.asarray(a), np.asarray(b))
  pairs = lambda n: (n * (n - 1) / 2).sum()
  index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
  expected = rows * cols / pairs(np.array([table.sum()]))
  top = (rows + cols) / 2
  if top == expected:
    return 1.0
  return float((index - expected) / (top - expected))


def cluster(profiles_YxQ: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
  """Average-linkage clustering on correlation distance, cut into `num_clusters` clusters.

  Returns:
    `(labels_Y, linkage)`: cluster of every class (1..num_clusters) and scipy's linkage
    matrix (for a dendrogram). A constant profile has distance 1 to every other one.
  """
  if profiles_YxQ.ndim != 2 or len(profiles_YxQ) < 2:
    raise ValueError(f'Clustering needs at least two profiles [Y, Q], got shape '
                     f'{profiles_YxQ.shape}.')
  with np.errstate(invalid='ignore', divide='ignore'):
    d = distance.pdist(np.asarray(profiles_YxQ, np.float64), 'correlation')
  linkage = hierarchy.linkage(np.nan_to_num(d, nan=1.0), method='average')
  return hierarchy.fcluster(linkage, num_clusters, criterion='maxclust'), linkage


def score_clustering(profiles_YxQ: np.ndarray, categories_Y: Sequence[str], *,
                     permutations: int = 1000, seed: int = 0) -> dict:
  """NMI and ARI of the clustering of the profiles against their categories, with the
  permutation baseline.

  Returns:
    `nmi`, `ari`; `nmi_chance`, `ari_chance` (mean over `permutations` shuffles of the
    categories), `nmi_chance_95`, `ari_chance_95` (their 95th percentiles), `nmi_p`, `ari_p`
    (the share of shuffles that score at least as high, counting the observed one), the
    `clusters` and the `linkage`.
  """
  categories_Y = np.asarray(categories_Y)
  clusters, linkage = cluster(profiles_YxQ, len(set(categories_Y.tolist())))
  out = {'nmi': normalized_mutual_information(clusters, categories_Y),
         'ari': adjusted_rand_index(clusters, categories_Y),
         'clusters': clusters, 'linkage': linkage}
  rng = np.random.default_rng(seed)
  shuffles = [rng.permutation(categories_Y) for _ in range(permutations)]
  for name, fn in (('nmi', normalized_mutual_information), ('ari', adjusted_rand_index)):
    chance = np.array([fn(clusters, s) for s in shuffles])
    out[f'{name}_chance'] = float(chance.mean()) if permutations else float('nan')
    out[f'{name}_chance_95'] = (float(np.percentile(chance, 95)) if permutations
                                else float('nan'))
    out[f'{name}_p'] = float((1 + (chance >= out[name] - 1e-12).sum()) / (1 + permutations))
  return out


def channel_order(profiles_YxLxC: np.ndarray) -> np.ndarray:
  """Channels ordered by the leaves of their average-linkage tree (correlation distance over
  classes and positions), so that channels with similar profiles sit side by side."""
  channels_CxQ = np.moveaxis(np.nan_to_num(profiles_YxLxC), -1, 0).reshape(
      profiles_YxLxC.shape[-1], -1)
  if len(channels_CxQ) < 2:
    return np.arange(len(channels_CxQ))
  with np.errstate(invalid='ignore', divide='ignore'):
    d = distance.pdist(channels_CxQ.astype(np.float64), 'correlation')
  return hierarchy.leaves_list(hierarchy.linkage(np.nan_to_num(d, nan=1.0), method='average'))


class LayerClustering(NamedTuple):
  """One layer under one alignment: the phoneme classes kept, their contrastive profiles
  `[Y, Z, C]` and `score_clustering`'s result."""
  classes: list[int]
  profiles_YxZxC: np.ndarray
  found: dict


def cluster_layers(profiles: Mapping[int, Mapping[str, layer_profiles.Sums]],
                   classes: Sequence[str], categories: Mapping[str, str | None],
                   layers: Sequence[int], names: Sequence[str], *, min_frames: int,
                   baseline: str, permutations: int, seed: int
                   ) -> tuple[list[dict], dict[tuple[int, str], LayerClustering]]:
  """The phoneme profiles of every layer and alignment clustered against their categories.

  Per layer and alignment (`names`, the axis 0 of the sums), the contrastive profiles
  (`layer_profiles.contrastive_profiles`, `baseline`) of the phoneme classes with at least
  `min_frames` frames and a category are scored (`score_clustering`); a layer whose kept classes fall in fewer than
  two categories is left out.

  Returns:
    One row per layer and alignment (layer, alignment, classes, frames and `score_clustering`'s
    numbers), and the `LayerClustering` of each by `(layer, name)`.
  """
  rows, kept = [], {}
  for layer in layers:
    sums = profiles[layer]['phoneme']
    for a, name in enumerate(names):
      count_Y = sums.count[a]
      frequent = [y for y in range(len(classes)) if count_Y[y] >= min_frames]
      check_categories([classes[y] for y in frequent], categories)
      keep = [y for y in frequent if categories[classes[y]] is not None]
      if len({categories[classes[y]] for y in keep}) < 2:
        continue
      c = layer_profiles.contrastive_profiles(
          layer_profiles.Sums(count_Y[keep], sums.total[a][keep]), baseline)['contrastive']
      found = score_clustering(c.reshape(len(keep), -1), [categories[classes[y]] for y in keep],
                    permutations=permutations, seed=seed)
      kept[layer, name] = LayerClustering(keep, c, found)
      rows.append({'layer': layer, 'alignment': name, 'classes': len(keep),
                   'frames': int(count_Y[keep].sum()),
                   **{k: round(v, 4) for k, v in found.items()
                      if k not in ('clusters', 'linkage')}})
  return rows, kept


def markdown_report(rows: list[dict], names: Sequence[str], chosen: str, about: str,
                    min_frames: int) -> str:
  """The markdown of `cluster_layers`'s rows: NMI and ARI per layer and alignment, and the
  chance level under the alignment `chosen`."""
  by = {(r['layer'], r['alignment']): r for r in rows}
  layers = sorted({r['layer'] for r in rows})
  classes = max(r['classes'] for r in rows)
  lines = [f'Phoneme profiles of every layer clustered (average linkage, correlation distance) '
           f'into as many clusters as phonetic categories; up to {classes} phoneme classes with '
           f'at least {min_frames} frames; NAvAI pass over the {about}. Chance: the same score '
           f'with the categories shuffled (mean, 95th percentile), under {chosen}.', '']
  for key, title in (('nmi', 'Normalised mutual information'), ('ari', 'Adjusted Rand index')):
    lines += [f'{title}:', '', '| layer | ' + ' | '.join(names) + ' | chance (95th pct.) |',
              '|---:|' + '---:|' * (len(names) + 1)]
    for l in layers:
      cells = [f'{by[l, n][key]:.3f}' if (l, n) in by else '' for n in names]
      chance = (f'{by[l, chosen][f"{key}_chance"]:.3f} ({by[l, chosen][f"{key}_chance_95"]:.3f})'
                if (l, chosen) in by else '')
      lines.append(f'| {l} | ' + ' | '.join(cells) + f' | {chance} |')
    lines.append('')
  return '\n'.join(lines)
