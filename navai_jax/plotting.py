"""Figure helpers shared by the experiments.

Spectrograms and maps are drawn time on x (in frames) and mel bins on y with ticks labelled in
Hz (`features.mel_frequencies`). Signed maps (sensitivity, relevance, patterns) use a diverging
colormap, red positive and blue negative, each scaled so that its absolute maximum is 1
(SPEC §8.6). Everything takes time-major arrays `[T, F]`, as the code does. Figures are built
with `matplotlib.figure.Figure`, so no display or pyplot backend is involved.
"""

from typing import Optional, Sequence

import matplotlib.colors
import matplotlib.figure
import ml_collections
import numpy as np

from navai_jax import features

DIVERGING_CMAP = 'bwr'  # Blue negative, white zero, red positive.
SPECTROGRAM_CMAP = 'gray'
HZ_TICKS = (250, 500, 1000, 2000, 4000, 8000)


def scale_max_abs(map_TxF: np.ndarray) -> np.ndarray:
  """`map / max|map|`; an all-zero map stays zero."""
  map_TxF = np.asarray(map_TxF, np.float64)
  m = np.max(np.abs(map_TxF)) if map_TxF.size else 0.0
  return map_TxF / m if m > 0 else map_TxF


def hz_ticks(config: ml_collections.ConfigDict, hz: Sequence[float] = HZ_TICKS
             ) -> tuple[np.ndarray, list[str]]:
  """Mel-bin positions and labels of the frequencies `hz` inside the bins' range."""
  centres = features.mel_frequencies(config)
  hz = [f for f in hz if centres[0] <= f <= centres[-1]]
  positions = np.interp(hz, centres, np.arange(len(centres)))
  labels = [f'{f / 1000:g}k' if f >= 1000 else f'{f:g}' for f in hz]
  return positions, labels


def _frame_axes(ax, config: ml_collections.ConfigDict, title: Optional[str]) -> None:
  positions, labels = hz_ticks(config)
  ax.set_yticks(positions)
  ax.set_yticklabels(labels)
  ax.set_xlabel('time (frames)')
  ax.set_ylabel('frequency (Hz)')
  if title:
    ax.set_title(title, fontsize='medium')


def _show(ax, image_TxF: np.ndarray, **kwargs):
  t, f = image_TxF.shape
  return ax.imshow(np.asarray(image_TxF).T, origin='lower', aspect='auto', interpolation='nearest',
                   extent=(-0.5, t - 0.5, -0.5, f - 0.5), **kwargs)


def show_spectrogram(ax, x_TxF: np.ndarray, config: ml_collections.ConfigDict,
                     title: Optional[str] = None):
  """A (z-normalized log-mel) spectrogram in grey; returns the image."""
  image = _show(ax, np.asarray(x_TxF), cmap=SPECTROGRAM_CMAP)
  _frame_axes(ax, config, title)
  return image


def show_map(ax, map_TxF: np.ndarray, config: ml_collections.ConfigDict,
             title: Optional[str] = None):
  """A signed map scaled to absolute maximum 1, red positive and blue negative."""
  image = _show(ax, scale_max_abs(map_TxF), cmap=DIVERGING_CMAP, vmin=-1.0, vmax=1.0)
  _frame_axes(ax, config, title)
  return image


def show_overlay(ax, x_TxF: np.ndarray, map_TxF: np.ndarray, config: ml_collections.ConfigDict,
                 title: Optional[str] = None, gamma: float = 0.5):
  """A signed map over its spectrogram: colour as in `show_map`, opacity |map| ** gamma
  (gamma < 1 makes weak values visible; the colour itself stays linear)."""
  show_spectrogram(ax, x_TxF, config)
  scaled = scale_max_abs(map_TxF)
  alpha = (np.abs(scaled) ** gamma).T
  t, f = scaled.shape
  image = ax.imshow(scaled.T, origin='lower', aspect='auto', interpolation='nearest',
                    extent=(-0.5, t - 0.5, -0.5, f - 0.5), cmap=DIVERGING_CMAP,
                    norm=matplotlib.colors.Normalize(-1.0, 1.0), alpha=alpha)
  _frame_axes(ax, config, title)
  return image


def overlay_grid(config: ml_collections.ConfigDict, windows_NxTxF: np.ndarray,
                 maps: dict[str, np.ndarray], row_titles: Sequence[str] = (),
                 path: Optional[str] = None, gamma: float = 0.5) -> matplotlib.figure.Figure:
  """One row per window: its spectrogram, then each map of `maps` (title -> `[N, T, F]`)
  overlaid on it. Saved to `path` when given."""
  n, cols = len(windows_NxTxF), 1 + len(maps)
  fig = matplotlib.figure.Figure(figsize=(3.6 * cols, 3.0 * n), layout='constrained')
  axes = fig.subplots(n, cols, squeeze=False)
  for i in range(n):
    prefix = f'{row_titles[i]}\n' if i < len(row_titles) else ''
    show_spectrogram(axes[i, 0], windows_NxTxF[i], config, f'{prefix}spectrogram')
    for j, (name, maps_NxTxF) in enumerate(maps.items(), start=1):
      image = show_overlay(axes[i, j], windows_NxTxF[i], maps_NxTxF[i], config, name, gamma)
  if maps:
    fig.colorbar(image, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, label='scaled value')
  if path:
    fig.savefig(path, dpi=120)
  return fig


def map_grid(config: ml_collections.ConfigDict, maps: Sequence[Sequence[np.ndarray]],
             row_titles: Sequence[str] = (), col_titles: Sequence[str] = (),
             path: Optional[str] = None) -> matplotlib.figure.Figure:
  """A grid of signed `[T, F]` maps (rows x columns), each scaled to absolute maximum 1."""
  rows, cols = len(maps), max(len(r) for r in maps)
  fig = matplotlib.figure.Figure(figsize=(3.2 * cols, 2.8 * rows), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False)
  for i, row in enumerate(maps):
    for j, map_TxF in enumerate(row):
      title = col_titles[j] if i == 0 and j < len(col_titles) else None
      image = show_map(axes[i, j], map_TxF, config, title)
      if j == 0 and i < len(row_titles):
        axes[i, j].set_ylabel(f'{row_titles[i]}\nfrequency (Hz)')
    for j in range(len(row), cols):
      axes[i, j].set_axis_off()
  fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label='scaled value')
  if path:
    fig.savefig(path, dpi=120)
  return fig
