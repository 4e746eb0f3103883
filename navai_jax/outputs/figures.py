"""Every figure of the project, drawn with one style.

Spectrograms and maps are drawn time on x (in frames) and mel bins on y with ticks labelled in
Hz (`features.mel_frequencies`). Signed maps (sensitivity, relevance, patterns) use a diverging
colormap, red positive and blue negative, each scaled so that its absolute maximum is 1
(SPEC §8.6). Everything takes time-major arrays `[T, F]`, as the code does. Figures are built
with `matplotlib.figure.Figure`, so no display or pyplot backend is involved.

* Figure 1 (activation maximization): `figure1`;
* Figure 2 (sensitivity and LRP of single frames): `overlay_grid`;
* Figure 3, Supplement A, t-maps and phoneme figures of a NAvAI result: `figure3`,
  `patterns`, `tmaps`, `phonemes`;
* the alignment-quality plot: `quality`;
* the attribution evaluation: `attribution_curves`, `attribution_randomisation`;
* the layer profiles: in `layer_figures`;
* the training curve of the run report: `training_curve`.
"""

import os
from typing import Optional, Sequence

import matplotlib.colors
import matplotlib.figure
import matplotlib.lines
import ml_collections
import numpy as np

from navai_jax.introspection import alignment
from navai_jax.recognizer import features
from navai_jax.core import files
from navai_jax.recognizer import vocab

def save(fig: matplotlib.figure.Figure, path: str | os.PathLike, dpi: int) -> None:
  """The figure as the image format of `path`'s suffix, written atomically."""
  files.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=dpi,
                                                       format=os.path.splitext(path)[1][1:]))


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
    save(fig, path, 120)
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
    save(fig, path, 120)
  return fig


# --- Figure 1 -------------------------------------------------------------------------------


def figure1(config: ml_collections.ConfigDict, results: dict, letter: str, output_layer: int,
            path: str | os.PathLike) -> matplotlib.figure.Figure:
  """Figure 1: optimal inputs `{layer: (channel, AMResult)}` (2x2), each scaled to absolute
  maximum 1."""
  fig = matplotlib.figure.Figure(figsize=(8, 6.4), layout='constrained')
  for ax, (layer, (channel, result)) in zip(fig.subplots(2, 2).flat, results.items()):
    what = f"output neuron '{letter}'" if layer == output_layer else f'channel {channel}'
    image = show_map(ax, np.asarray(result.input_TxF), config, f'layer {layer}, {what}')
  fig.colorbar(image, ax=fig.axes, shrink=0.6, label='scaled value')
  fig.suptitle(f"Optimal inputs of the neurons most active on a frame predicted as '{letter}'")
  save(fig, path, 120)
  return fig


# --- NAvAI ----------------------------------------------------------------------------------


def _panel(ax, map_TxF: Optional[np.ndarray], config: ml_collections.ConfigDict,
           title: str) -> None:
  """One map scaled to absolute maximum 1, or an empty labelled panel when it has no frames."""
  if map_TxF is None or not np.all(np.isfinite(map_TxF)):
    ax.set_title(title, fontsize='small')
    ax.text(0.5, 0.5, 'no frames', ha='center', va='center', transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return
  show_map(ax, map_TxF, config, title)
  ax.title.set_fontsize('small')
  ax.axvline(alignment.CENTRE, color='0.4', lw=0.5, ls=':')


# Room around every panel of a grid, in inches: tick labels and the axis label to the left and
# below, a title above; then a figure title and a colour bar. Grids of many alike panels are laid
# out with these fixed margins instead of constrained layout, which measures every text of every
# panel (`benchmarks/figures_benchmark.py`: a 56-panel t-map figure in a fraction of the time).
_LEFT, _BELOW, _ABOVE, _RIGHT = 0.62, 0.5, 0.3, 0.12
_TITLE, _COLORBAR = 0.35, 1.0


def new_figure(rows: int, cols: int, width: float = 2.6, height: float = 2.2, *,
               title: bool = False, colorbar: bool = False):
  """A figure of `rows` x `cols` panels of `width` x `height` inches each, with room for a
  figure title and a colour bar at the right (`grid_colorbar`) when asked; (figure, axes)."""
  fig_width = width * cols + (_COLORBAR if colorbar else 0.0)
  fig_height = height * rows + (_TITLE if title else 0.0)
  fig = matplotlib.figure.Figure(figsize=(fig_width, fig_height))
  axes_width, axes_height = width - _LEFT - _RIGHT, height - _BELOW - _ABOVE
  axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
      left=_LEFT / fig_width, right=(width * cols - _RIGHT) / fig_width,
      bottom=_BELOW / fig_height, top=(height * rows - _ABOVE) / fig_height,
      wspace=(_LEFT + _RIGHT) / axes_width, hspace=(_BELOW + _ABOVE) / axes_height))
  return fig, axes


def label_outer(axes: np.ndarray) -> None:
  """Axis labels and tick labels of a grid of alike panels only at its outer edges: y on the
  first column, x where no shown panel is below (they all share the axes' units and ranges)."""
  rows, cols = axes.shape
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      if c > 0:
        ax.set_ylabel('')
        ax.tick_params(labelleft=False)
      if r + 1 < rows and axes[r + 1, c].axison and axes[r + 1, c].get_visible():
        ax.set_xlabel('')
        ax.tick_params(labelbottom=False)


def grid_colorbar(fig: matplotlib.figure.Figure, image, label: str) -> None:
  """The colour bar of a `new_figure(..., colorbar=True)` grid, in the room at its right."""
  width, height = fig.get_size_inches()
  bar_height = min(0.6 * height, 4.0)
  cax = fig.add_axes(((width - 0.8) / width, (height - bar_height) / 2 / height,
                      0.15 / width, bar_height / height))
  fig.colorbar(image, cax=cax, label=label)


def grid_title(fig: matplotlib.figure.Figure, text: str, **kwargs) -> None:
  """The title of a `new_figure(..., title=True)` grid, in the room above its panels."""
  fig.suptitle(text, y=1 - 0.12 / fig.get_size_inches()[1], va='top', **kwargs)


def _about(res: dict[str, np.ndarray]) -> str:
  """', SPLIT split, N frames of U utterances' when the result says what it averaged."""
  return f', {res["about"]}' if 'about' in res else ''


def figure3(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], path: str,
            letters: Sequence[str] = ('a', 't')) -> matplotlib.figure.Figure:
  """The paper's Figure 3: rows mean of each letter, all-letter mean, normalized patterns;
  one column per alignment method."""
  methods = [str(m) for m in res['methods']]
  index = [vocab.LETTERS.index(c) for c in letters]
  rows = ([(f'mean {c}', lambda m, i=i: res['letter_mean'][m, i]) for c, i in zip(letters, index)]
          + [('mean, all letters', lambda m: res['all_letter_mean'][m])]
          + [(f'normalized {c}', lambda m, i=i: res['letter_normalized'][m, i])
             for c, i in zip(letters, index)])
  fig, axes = new_figure(len(rows), len(methods), title=True)
  for r, (name, get) in enumerate(rows):
    for m, method in enumerate(methods):
      _panel(axes[r, m], get(m), config, f'{name} | {method}')
  grid_title(fig, f'NAvAI{_about(res)}')
  label_outer(axes)
  save(fig, path, 110)
  return fig


def patterns(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], method: int,
             path: str, kind: str = 'letter', classes: Optional[Sequence[str]] = None,
             cols: int = 7) -> matplotlib.figure.Figure:
  """Supplement A: the normalized pattern of every class (letters a-z) under one method."""
  names = [str(c) for c in res['letters' if kind == 'letter' else 'phoneme_classes']]
  classes = names if classes is None else list(classes)
  fig, axes = new_figure(-(-len(classes) // cols), cols, title=True)
  for k, name in enumerate(classes):
    ax = axes.flat[k]
    if name not in names:
      _panel(ax, None, config, f'{name} (never seen)')
      continue
    i = names.index(name)
    count = int(res[f'{kind}_count'][method, i])
    _panel(ax, res[f'{kind}_normalized'][method, i] if count else None, config,
           f'{name}  ({count} frames)')
  for ax in axes.flat[len(classes):]:
    ax.set_axis_off()
  grid_title(fig, f'normalized {kind} patterns, alignment {res["methods"][method]}{_about(res)}')
  label_outer(axes)
  save(fig, path, 100)
  return fig


def tmaps(config: ml_collections.ConfigDict, res: dict[str, np.ndarray], method: int,
          path: str, kind: str = 'letter', pairs_per_row: int = 4) -> matplotlib.figure.Figure:
  """Each class's normalized pattern beside its Welch t-map against all frames (one method).

  The t-maps share one colour scale, ± the 99th percentile of |t| over all classes.
  """
  names = [str(c) for c in res['letters' if kind == 'letter' else 'phoneme_classes']]
  tmaps = res[f'{kind}_tmap'][method]
  finite = np.abs(tmaps[np.isfinite(tmaps)])
  limit = float(np.percentile(finite, 99)) if finite.size else 1.0
  fig, axes = new_figure(-(-len(names) // pairs_per_row), 2 * pairs_per_row, title=True,
                         colorbar=True)
  image = None
  for k, name in enumerate(names):
    left, right = axes.flat[2 * k], axes.flat[2 * k + 1]
    count = int(res[f'{kind}_count'][method, k])
    _panel(left, res[f'{kind}_normalized'][method, k] if count else None, config,
           f'{name}: pattern ({count})')
    if count < 2 or not np.all(np.isfinite(tmaps[k])):
      _panel(right, None, config, f'{name}: t')
      continue
    image = right.imshow(tmaps[k].T, origin='lower', aspect='auto', interpolation='nearest',
                         cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
    positions, labels = hz_ticks(config)
    right.set_yticks(positions, labels)
    right.set_title(f'{name}: Welch t', fontsize='small')
  for ax in axes.flat[2 * len(names):]:
    ax.set_axis_off()
  if image is not None:
    grid_colorbar(fig, image, 't')
  grid_title(fig, f'{kind} patterns and t-maps against all {kind} frames, alignment '
               f'{res["methods"][method]}{_about(res)}')
  label_outer(axes)
  save(fig, path, 90)
  return fig


def phonemes(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
             phonemes: Sequence[str], path: str) -> matplotlib.figure.Figure:
  """Normalized patterns of phoneme classes (rows) under every alignment method (columns)."""
  names = [str(c) for c in res['phoneme_classes']]
  methods = [str(m) for m in res['methods']]
  fig, axes = new_figure(len(phonemes), len(methods))
  for r, name in enumerate(phonemes):
    i = names.index(name) if name in names else None
    for m, method in enumerate(methods):
      count = 0 if i is None else int(res['phoneme_count'][m, i])
      _panel(axes[r, m], res['phoneme_normalized'][m, i] if count else None, config,
             f'/{name}/ ({count}) | {method}')
  label_outer(axes)
  save(fig, path, 100)
  return fig


def quality(rows: list[dict], methods: Sequence[str], path: str) -> matplotlib.figure.Figure:
  """Bars per method: median and 90th percentile of the distance to the true span, and the
  share of aligned positions inside it (all frames)."""
  by = {(r['method'], r['letter'], r['level']): r for r in rows}
  fig = matplotlib.figure.Figure(figsize=(9, 3.2), layout='constrained')
  axes = fig.subplots(1, 2)
  x = np.arange(len(methods))
  for offset, key, label in ((-0.2, 'median_ms', 'median'), (0.2, 'p90_ms', '90th percentile')):
    axes[0].bar(x + offset, [by[(m, 'all', 'all')][key] for m in methods], width=0.4,
                label=label)
  axes[0].set_ylabel('distance to true span (ms)')
  axes[0].legend(fontsize='small')
  axes[1].bar(x, [100 * by[(m, 'all', 'all')]['inside_share'] for m in methods],
              color='tab:green')
  axes[1].set_ylabel('aligned position inside span (%)')
  for ax in axes:
    ax.set_xticks(x, methods, rotation=20)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save(fig, path, 150)
  return fig


def attribution_curves(result: dict, path: str) -> matplotlib.figure.Figure:
  """Mean deletion and insertion curves (MoRF) of every method, one panel per granularity and
  mode; the random removal order dashed in black."""
  keys = sorted(result['random_order'])
  fig = matplotlib.figure.Figure(figsize=(3.2 * len(keys), 3.4), layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(keys)))
  p = np.asarray(result['fractions'])
  for ax, key in zip(axes, keys):
    for method, per_frame in result['per_frame'].items():
      curve = per_frame.get(f'{key}/morf/curve')
      if curve is not None:
        ax.plot(p, np.mean(curve, 0), label=method, lw=1)
    ax.plot(p, np.mean(result['random_order'][key], 0), 'k--', lw=1.5, label='random order')
    ax.set_title(key.replace('/', ', '), fontsize='small')
    ax.set_xlabel('fraction of units removed' if 'deletion' in key else 'fraction inserted')
  axes[0].set_ylabel('probability of the predicted letter')
  axes[-1].legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save(fig, path, 120)
  return fig


def attribution_randomisation(result: dict, path: str) -> matplotlib.figure.Figure:
  """Cascading randomisation: mean Spearman correlation to the trained network's map against
  the number of layers re-initialized, from the top."""
  fig = matplotlib.figure.Figure(figsize=(6.5, 3.6), layout='constrained')
  ax = fig.subplots()
  for method, per_frame in result['per_frame'].items():
    if 'randomisation' in per_frame:
      values = np.asarray(per_frame['randomisation'])
      ax.plot(np.arange(values.shape[1]), np.nanmean(values, 0), marker='o', ms=3, label=method)
  ax.axhline(0, color='gray', lw=0.5)
  ax.set_xlabel('layers re-initialized (from the top)')
  ax.set_ylabel('Spearman to the trained map')
  ax.legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save(fig, path, 120)
  return fig


def training_curve(lines: list[dict], path: str) -> matplotlib.figure.Figure:
  """Training loss and the evaluation split's LER against step (two axes)."""
  fig = matplotlib.figure.Figure(figsize=(8, 3.4), layout='constrained')
  ax = fig.subplots()
  train = [(l['step'], l['loss']) for l in lines if 'loss' in l]
  if train:
    ax.plot(*zip(*train), color='tab:blue', lw=1)
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel('CTC loss (per token)', color='tab:blue')
  evals = [(l['step'], l['ler']) for l in lines if 'ler' in l]
  if evals:
    split = next(l['split'] for l in lines if 'ler' in l)
    ax2 = ax.twinx()
    ax2.plot(*zip(*evals), color='tab:red', marker='o', ms=3)
    ax2.set_ylabel(f'{split} LER', color='tab:red')
    ax2.set_ylim(0, max(1.0, max(v for _, v in evals)))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save(fig, path, 120)
  return fig
