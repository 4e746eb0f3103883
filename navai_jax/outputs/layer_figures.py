"""The figures of where phonemes form: clustering scores by layer, dendrograms, phoneme
profiles of a layer's channels and the channels that carry a letter."""

import os
from typing import Sequence

import matplotlib.figure
import ml_collections
import numpy as np

from navai_jax.outputs import figures


CATEGORY_COLOURS = {'vowel': 'tab:red', 'plosive': 'tab:blue', 'fricative': 'tab:green',
                    'nasal': 'tab:purple', 'approximant': 'tab:orange'}


def _category_colour(category: str) -> str:
  return CATEGORY_COLOURS.get(category, 'black')


def cluster_scores(rows: list[dict], alignments: Sequence[str], path: str
                   ) -> matplotlib.figure.Figure:
  """NMI and ARI of the phoneme clustering against layer, one line per alignment; the grey
  band spans the permutation baseline (mean to 95th percentile, widest over alignments)."""
  fig = matplotlib.figure.Figure(figsize=(9, 3.4), layout='constrained')
  axes = fig.subplots(1, 2)
  layers = sorted({r['layer'] for r in rows})
  for ax, key, name in ((axes[0], 'nmi', 'normalised mutual information'),
                        (axes[1], 'ari', 'adjusted Rand index')):
    low = [min(r[f'{key}_chance'] for r in rows if r['layer'] == l) for l in layers]
    high = [max(r[f'{key}_chance_95'] for r in rows if r['layer'] == l) for l in layers]
    ax.fill_between(layers, low, high, color='0.85', label='chance (mean to 95th pct.)')
    for a in alignments:
      mine = sorted((r['layer'], r[key]) for r in rows if r['alignment'] == a)
      if mine:
        ax.plot(*zip(*mine), marker='o', ms=3, label=a)
    ax.set_xticks(layers)
    ax.set_xlabel('layer')
    ax.set_ylabel(name)
  axes[1].legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1, 1))
  fig.suptitle('Do phoneme profiles cluster by phonetic category?', fontsize='medium')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 130)
  return fig


def dendrogram(linkage: np.ndarray, classes: Sequence[str], categories: Sequence[str],
               title: str, path: str) -> matplotlib.figure.Figure:
  """The average-linkage tree of the phoneme profiles; leaf labels coloured by category."""
  from scipy.cluster import hierarchy  # pylint: disable=g-import-not-at-top
  fig = matplotlib.figure.Figure(figsize=(max(6.0, 0.22 * len(classes)), 3.8),
                                 layout='constrained')
  ax = fig.subplots()
  hierarchy.dendrogram(linkage, labels=list(classes), ax=ax, color_threshold=0,
                       above_threshold_color='0.3', leaf_font_size=8)
  colour = dict(zip(classes, categories))
  for label in ax.get_xticklabels():
    label.set_color(_category_colour(colour[label.get_text()]))
  ax.set_ylabel('correlation distance')
  handles = [matplotlib.lines.Line2D([], [], color=c, lw=3, label=k)
             for k, c in CATEGORY_COLOURS.items() if k in set(categories)]
  ax.legend(handles=handles, fontsize='x-small', loc='upper right')
  ax.set_title(title, fontsize='medium')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 130)
  return fig


def layer_profiles(profiles_YxLxC: np.ndarray, classes: Sequence[str], order_C: np.ndarray,
                   title: str, path: str, cols: int = 5) -> matplotlib.figure.Figure:
  """Contrastive profiles of some classes at one layer: channels (ordered by `order_C`) against
  the layer's positions, red above the mean over classes and blue below, one colour scale."""
  rows = -(-len(classes) // cols)
  fig, axes = figures.new_figure(rows, cols, 2.2, 2.4, title=True, colorbar=True)
  limit = np.nanmax(np.abs(profiles_YxLxC)) or 1.0
  for ax in axes.flat[len(classes):]:
    ax.set_visible(False)
  image = None
  for ax, name, profile_LxC in zip(axes.flat, classes, profiles_YxLxC):
    image = ax.imshow(np.asarray(profile_LxC)[:, order_C].T, origin='lower', aspect='auto',
                      interpolation='nearest', cmap=figures.DIVERGING_CMAP, vmin=-limit, vmax=limit)
    ax.set_title(name, fontsize='medium')
    ax.set_xlabel('position')
    ax.set_ylabel('channel (clustered)')
    ax.set_yticks([])
  if image is not None:
    figures.grid_colorbar(fig, image, 'activation - mean over classes')
  figures.grid_title(fig, title, fontsize='medium')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 110)
  return fig


def letter_channels(config: ml_collections.ConfigDict, letter: str, layer: int,
                    channels: Sequence[int], profile_LxC: np.ndarray, others_YxLxC: np.ndarray,
                    inputs_NxTxF: np.ndarray, path: str) -> matplotlib.figure.Figure:
  """Which channels carry a letter: per channel (a row), its contrastive profile for the
  letter against the layer's positions (the other letters in grey) and its activation
  maximisation input."""
  fig, axes = figures.new_figure(len(channels), 2, 3.4, 2.0, title=True)
  for r, channel in enumerate(channels):
    ax = axes[r, 0]
    for other in others_YxLxC:
      ax.plot(other[:, channel], color='0.8', lw=0.6)
    ax.plot(profile_LxC[:, channel], color='tab:red', lw=1.5)
    ax.axhline(0, color='0.4', lw=0.5)
    ax.set_title(f'layer {layer}, channel {channel}: profile of {letter!r}', fontsize='small')
    ax.set_xlabel('position')
    figures.show_spectrogram(axes[r, 1], inputs_NxTxF[r], config, f'AM input, channel {channel}')
    axes[r, 1].title.set_fontsize('small')
  figures.grid_title(fig, f'The channels of layer {layer} most above the mean for letter '
                     f'{letter!r}', fontsize='medium')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 110)
  return fig
