"""Where phonemes form: the layer profiles of the NAvAI pass clustered per layer against
phonetic categories, their figures, and the channels that carry a letter."""

import json
import os
from typing import Any, Optional

import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.introspection import activation_max
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import phoneme_clusters
from navai_jax.outputs import layer_figures
from navai_jax.recognizer import vocab
from navai_jax.speech import data
from navai_jax.speech import phoneme_times
from navai_jax.stages import common
from navai_jax.stages import navai_split

PyTree = Any


def _check(config: ml_collections.ConfigDict, names: tuple[str, ...]) -> None:
  """ValueErrors for settings of `layer_clusters` that the pass's settings cannot serve."""
  s = config.layer_clusters
  if not config.navai.layers:
    raise ValueError('config.navai.layers is empty: the NAvAI pass profiles no layer.')
  missing = sorted({*s.dendrogram_layers, s.figure_layer} - set(config.navai.layers))
  if missing:
    raise ValueError(f'Layer(s) {", ".join(map(str, missing))} of config.layer_clusters are not '
                     f'profiled (config.navai.layers: {", ".join(map(str, config.navai.layers))}).')
  if s.alignment not in names:
    raise ValueError(f'config.layer_clusters.alignment={s.alignment!r} is not among the profiled '
                     f'layer alignments ({", ".join(names)}).')


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        workdir: str, navai_dir: Optional[str] = None, progress: bool = False
        ) -> Optional[dict[str, Any]]:
  """Where phonemes form: the layer profiles of the NAvAI pass, clustered per layer.

  Reads `NAVAI_DIR/layers_SPLIT.npz` (the profiles that `navai_split.run` folds in its pass;
  the pass runs first where they are missing or were made with other settings). For every
  profiled layer and alignment, `phoneme_clusters.cluster_layers` with the settings of
  `config.layer_clusters`. Writes into `out_dir`: `clustering.{csv,json,md}`,
  `clustering_by_layer.png`, `dendrogram_layerN.png` (`dendrogram_layers`),
  `profiles_layerN.png` (`figure_layer`, `figure_phonemes`), and per letter of `letters`
  `channels_X_layerN.png`: its `top_channels` channels furthest above the mean over letters
  (`layer_profiles.top_channels`), with their activation maximisation inputs (`am` section).

  Returns:
    {'rows': one dict per layer and alignment, 'markdown': the report, 'meta'} (None on
    processes > 0).
  """
  common.start(config, out_dir)
  s = config.layer_clusters
  names = layer_profiles.computable_alignments(config.navai.layer_alignments,
                                               config.navai.methods)
  _check(config, names)
  categories = phoneme_clusters.read_categories(s.categories)
  data.load_split(config, config.navai.split)  # A split without usable audio says so first.
  if not phoneme_times.find_timings(config, config.navai.timing_dir):
    raise ValueError(f'Clustering phonemes needs phoneme times, and the utterances of '
                     f'{config.data.source} have no .timing.json files (real LibriSpeech has '
                     'none); point --config.navai.timing_dir at a copy that has them.')
  saved, meta = navai_split.saved_result(
      config, variables, step, navai_dir or os.path.join(workdir, 'navai'), 'layers',
      workdir=workdir, wanted={'layers': list(config.navai.layers),
                               'layer_alignments': list(names)}, progress=progress)
  if saved is None:
    return None
  classes = [str(c) for c in saved['phoneme_classes']]
  profiles = layer_profiles.read(saved)
  rows, kept = phoneme_clusters.cluster_layers(
      profiles, classes, categories, config.navai.layers, names, min_frames=s.min_frames,
      baseline=s.baseline, permutations=s.permutations, seed=s.seed)
  if not rows:
    raise ValueError(f'No layer has phoneme classes of two categories with at least '
                     f'{s.min_frames} frames each (config.layer_clusters.min_frames); average '
                     'more utterances (config.navai.max_utterances).')
  os.makedirs(out_dir, exist_ok=True)
  files.write_text(os.path.join(out_dir, 'clustering.csv'), ','.join(rows[0]) + '\n' + ''.join(
      ','.join(str(v) for v in r.values()) + '\n' for r in rows))
  clusters = {f'layer{l}/{n}': {classes[y]: int(k) for y, k in zip(c.classes, c.found['clusters'])}
              for (l, n), c in kept.items()}
  files.write_text(os.path.join(out_dir, 'clustering.json'), json.dumps(
      {'rows': rows, 'clusters': clusters, 'about': str(saved['about']),
       'categories': {c: categories[c] for c in classes if c in categories},
       'settings': s.to_dict()}, indent=1, default=list))
  _draw(config, variables, rows, kept, names, classes, categories, profiles,
        str(saved['about']), out_dir)
  markdown = phoneme_clusters.markdown_report(rows, names, s.alignment, str(saved['about']),
                                              s.min_frames)
  files.write_text(os.path.join(out_dir, 'clustering.md'), markdown)
  return {'rows': rows, 'markdown': markdown, 'meta': meta}


def _draw(config: ml_collections.ConfigDict, variables: PyTree, rows: list[dict],
          kept: dict[tuple[int, str], phoneme_clusters.LayerClustering], names: tuple[str, ...],
          classes: list[str], categories: dict[str, Optional[str]],
          profiles: dict[int, dict[str, layer_profiles.Sums]], about: str, out_dir: str) -> None:
  """The clustering scores, dendrograms, profile figure and letter channel figures."""
  s = config.layer_clusters
  layer_figures.cluster_scores(rows, names, os.path.join(out_dir, 'clustering_by_layer.png'))
  for layer in s.dendrogram_layers:
    if (layer, s.alignment) in kept:
      c = kept[layer, s.alignment]
      layer_figures.dendrogram(c.found['linkage'], [classes[y] for y in c.classes],
                               [categories[classes[y]] for y in c.classes],
                               f'Layer {layer} ({s.alignment}): NMI {c.found["nmi"]:.2f}, '
                               f'ARI {c.found["ari"]:.2f}',
                               os.path.join(out_dir, f'dendrogram_layer{layer}.png'))
  layer = s.figure_layer
  if (layer, s.alignment) in kept:
    c = kept[layer, s.alignment]
    shown = [i for i, y in enumerate(c.classes) if classes[y] in s.figure_phonemes]
    if shown:
      layer_figures.layer_profiles(c.profiles_YxZxC[shown], [classes[c.classes[i]] for i in shown],
                                   phoneme_clusters.channel_order(c.profiles_YxZxC),
                                   f'Phoneme profiles of layer {layer} ({s.alignment}), {about}',
                                   os.path.join(out_dir, f'profiles_layer{layer}.png'))
  a = names.index(s.alignment)
  letters = layer_profiles.contrastive_profiles(layer_profiles.Sums(
      profiles[layer]['letter'].count[a], profiles[layer]['letter'].total[a]), s.baseline)
  for letter in s.letters:
    i = vocab.LETTERS.index(letter)
    if not letters['count'][i]:
      print(f'No frame was predicted as {letter!r}; its channel figure is skipped.')
      continue
    channels = layer_profiles.top_channels(letters['contrastive'], i, s.top_channels)
    inputs = activation_max.maximize_neurons(config, variables, layer, channels).input_TxF
    others = np.delete(letters['contrastive'], i, axis=0)
    layer_figures.letter_channels(config, letter, layer, channels, letters['contrastive'][i],
                                  others[letters['count'][np.arange(26) != i] > 0],
                                  np.asarray(inputs),
                                  os.path.join(out_dir, f'channels_{letter}_layer{layer}.png'))
