"""Figures: what each panel shows is the scaled map it was given, on the shared axes."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from navai_jax.introspection import alignment_quality
from navai_jax.recognizer import features
from navai_jax.outputs import figures
from navai_jax.configs import default

CONFIG = default.get_config('tiny')


def test_scaling_and_hz_ticks():
  m = np.asarray([[0.0, -4.0], [2.0, 1.0]])
  np.testing.assert_array_equal(figures.scale_max_abs(m), m / 4)
  np.testing.assert_array_equal(figures.scale_max_abs(np.zeros((2, 2))), np.zeros((2, 2)))
  positions, labels = figures.hz_ticks(CONFIG)
  centres = features.mel_frequencies(CONFIG)
  np.testing.assert_allclose(np.interp(positions, np.arange(len(centres)), centres),
                             [250, 500, 1000, 2000, 4000], rtol=1e-9)
  assert labels == ['250', '500', '1k', '2k', '4k']


def test_grids_show_each_map_scaled_to_max_abs_one(tmp_path):
  rng = np.random.default_rng(0)
  windows, maps = rng.normal(size=(2, 206, 128)), rng.normal(size=(2, 206, 128))
  fig = figures.overlay_grid(CONFIG, windows, {'a': maps, 'b': -maps}, ['one', 'two'],
                             path=tmp_path / 'grid.png')
  assert len(fig.axes) == 2 * 3 + 1  # spectrogram + two overlays per row, one colour bar
  spectrogram, overlay = fig.axes[3].images[0], fig.axes[4].images[1]
  np.testing.assert_array_equal(spectrogram.get_array(), windows[1].T)
  np.testing.assert_allclose(overlay.get_array(), (maps[1] / np.abs(maps[1]).max()).T)
  assert fig.axes[3].get_title() == 'two\nspectrogram'
  fig = figures.map_grid(CONFIG, [[maps[0], maps[1]], [maps[0]]], ['r1', 'r2'], ['c1', 'c2'],
                         path=tmp_path / 'maps.png')
  shown = fig.axes[1].images[0].get_array()
  np.testing.assert_allclose(shown, (maps[1] / np.abs(maps[1]).max()).T)
  assert np.abs(shown).max() == pytest.approx(1.0)
  assert not fig.axes[3].axison  # the missing fourth panel is blank
  assert (tmp_path / 'grid.png').exists() and (tmp_path / 'maps.png').exists()


def _navai_result(rng, methods=('none', 'lrp_max'), phonemes=('a', 't')):
  m, f = len(methods), 128
  count = rng.integers(0, 3, size=(m, 26))
  res = {'methods': np.array(methods), 'letters': np.array(list('abcdefghijklmnopqrstuvwxyz')),
         'phoneme_classes': np.array(phonemes), 'letter_count': count,
         'phoneme_count': np.full((m, len(phonemes)), 3)}
  for kind, n in (('letter', 26), ('phoneme', len(phonemes))):
    for name in ('mean', 'normalized', 'tmap'):
      res[f'{kind}_{name}'] = rng.normal(size=(m, n, 206, f))
    res[f'all_{kind}_mean'] = rng.normal(size=(m, 206, f))
  return res


def _without_frames(res):
  """NaN means and patterns where a class has no frames, as `moments.summarize` gives them."""
  for kind in ('letter', 'phoneme'):
    for name in ('mean', 'normalized', 'tmap'):
      res[f'{kind}_{name}'][res[f'{kind}_count'] == 0] = np.nan
  return res


def test_navai_figures_show_the_patterns_and_mark_empty_classes(tmp_path):
  res = _navai_result(np.random.default_rng(1))
  res['letter_count'][:, 0] = 2  # 'a' has frames under every method
  res['letter_count'][1, 19] = 0  # 't' has none under lrp_max
  res = _without_frames(res)
  res['letter_tmap'][0, 1, 5, 7] = np.nan  # a t-map with a hole is left blank
  fig = figures.figure3(CONFIG, res, str(tmp_path / 'f3.png'), ('a', 't'))
  # Rows: mean a, mean t, all letters, normalized a, normalized t; columns: the methods.
  shown = [[fig.axes[2 * r + m] for m in range(2)] for r in range(5)]
  for m in range(2):
    for r, want in ((0, res['letter_mean'][m, 0]), (2, res['all_letter_mean'][m]),
                    (3, res['letter_normalized'][m, 0])):
      np.testing.assert_allclose(shown[r][m].images[0].get_array(),
                                 figures.scale_max_abs(want).T)
  assert shown[4][0].get_title() == 'normalized t | none'
  assert not shown[4][1].images  # 't' has no frames under lrp_max
  fig = figures.patterns(CONFIG, res, 1, str(tmp_path / 'sa.png'))
  panel_a = fig.axes[0]
  assert panel_a.get_title() == f'a  ({res["letter_count"][1, 0]} frames)'
  np.testing.assert_allclose(panel_a.images[0].get_array(),
                             figures.scale_max_abs(res['letter_normalized'][1, 0]).T)
  assert not fig.axes[19].images and 'no frames' in fig.axes[19].texts[0].get_text()
  fig = figures.tmaps(CONFIG, res, 0, str(tmp_path / 'tm.png'))
  # Pairs of (pattern, t-map) per letter; the t-maps on one scale, +-99th percentile of |t|.
  tmaps = res['letter_tmap'][0]
  limit = np.percentile(np.abs(tmaps[np.isfinite(tmaps)]), 99)
  np.testing.assert_allclose(fig.axes[0].images[0].get_array(),
                             figures.scale_max_abs(res['letter_normalized'][0, 0]).T)
  t_image = fig.axes[1].images[0]
  np.testing.assert_array_equal(t_image.get_array(), tmaps[0].T)
  assert t_image.get_clim() == pytest.approx((-limit, limit))
  assert not fig.axes[3].images  # 'b' has a NaN in its t-map
  fig = figures.phonemes(CONFIG, res, ('a', 'zz'), str(tmp_path / 'ph.png'))
  np.testing.assert_allclose(fig.axes[1].images[0].get_array(),
                             figures.scale_max_abs(res['phoneme_normalized'][1, 0]).T)
  assert not fig.axes[2].images and fig.axes[2].get_title() == '/zz/ (0) | none'
  for name in ('f3', 'sa', 'tm', 'ph'):
    assert matplotlib.image.imread(tmp_path / f'{name}.png').shape[0] > 100


def test_figure1_shows_the_optimal_inputs(tmp_path):
  rng = np.random.default_rng(2)
  results = {layer: (7, SimpleNamespace(input_TxF=rng.normal(size=(206, 128))))
             for layer in (1, 2, 11, 12)}
  fig = figures.figure1(CONFIG, results, 'a', 12, str(tmp_path / 'f1.png'))
  assert [ax.get_title() for ax in fig.axes[:4]] == [
      'layer 1, channel 7', 'layer 2, channel 7', 'layer 11, channel 7',
      "layer 12, output neuron 'a'"]
  np.testing.assert_allclose(fig.axes[2].images[0].get_array(),
                             figures.scale_max_abs(results[11][1].input_TxF).T)


def test_quality_bars_are_the_table(tmp_path):
  tally = alignment_quality.empty_tally(2)
  tally['histogram'][0, 0, 0, [0, 5, 9]] = [2, 1, 1]
  tally['histogram'][1, 19, 1, [0]] = [3]
  methods = ('none', 'lrp_max')
  rows = alignment_quality.quality_table(tally, methods)
  fig = figures.quality(rows, methods, str(tmp_path / 'q.png'))
  by = {(r['method'], r['letter'], r['level']): r for r in rows}
  medians = [bar.get_height() for bar in fig.axes[0].containers[0]]
  inside = [bar.get_height() for bar in fig.axes[1].containers[0]]
  assert medians == [by[(m, 'all', 'all')]['median_ms'] for m in methods]
  assert inside == [100 * by[(m, 'all', 'all')]['inside_share'] for m in methods] == [50, 100]
