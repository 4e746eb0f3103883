"""The channel atlas's figures: a channel's card (its reference crops with their conditional
maps, its AM input) and the channel-conditional NAvAI patterns of each letter."""

import os
from typing import Optional, Sequence

import matplotlib.figure
import ml_collections
import numpy as np

from navai_jax.outputs import figures


def channel_card(config: ml_collections.ConfigDict, title: str,
                 crops: Sequence[Sequence[tuple[np.ndarray, np.ndarray, str]]],
                 kinds: Sequence[str], am_input_TxF: Optional[np.ndarray], path: str
                 ) -> matplotlib.figure.Figure:
  """One row per kind of reference frame: each crop (spectrogram `[T, F]` of the unit's
  receptive field, its conditional map, a caption) as an overlay; the AM input beside them."""
  cols = max(len(row) for row in crops) + (am_input_TxF is not None)
  fig, axes = figures.new_figure(len(crops), max(cols, 1), 2.3, 2.1, title=True)
  for r, (kind, row) in enumerate(zip(kinds, crops)):
    for c, (x_TxF, map_TxF, caption) in enumerate(row):
      figures.show_overlay(axes[r, c], x_TxF, map_TxF, config, f'{kind} #{c + 1}\n{caption}')
      axes[r, c].title.set_fontsize('x-small')
    for c in range(len(row), cols):
      axes[r, c].axis('off')
  if am_input_TxF is not None:
    figures.show_spectrogram(axes[0, cols - 1], am_input_TxF, config, 'AM input')
    axes[0, cols - 1].title.set_fontsize('x-small')
  figures.label_outer(axes)
  figures.grid_title(fig, title, fontsize='small')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 90)
  return fig


def conditional_patterns(config: ml_collections.ConfigDict,
                         rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]],
                         title: str, path: str) -> matplotlib.figure.Figure:
  """Rows of normalized patterns: per letter, its NAvAI pattern over all its frames, then over
  the frames each of its channels carries most (panel, caption)."""
  cols = max(len(panels) for _, panels in rows)
  fig, axes = figures.new_figure(len(rows), cols, 2.0, 1.7, title=True)
  for r, (letter, panels) in enumerate(rows):
    for c, (pattern_WxF, caption) in enumerate(panels):
      if np.isfinite(pattern_WxF).all():
        figures.show_map(axes[r, c], pattern_WxF, config, f'{letter!r}: {caption}')
      else:
        axes[r, c].set_title(f'{letter!r}: {caption}\n(no frames)', fontsize='x-small')
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
      axes[r, c].title.set_fontsize('x-small')
    for c in range(len(panels), cols):
      axes[r, c].axis('off')
  figures.label_outer(axes)
  figures.grid_title(fig, title, fontsize='small')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figures.save(fig, path, 80)
  return fig
