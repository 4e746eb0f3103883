"""The attribution suite's result as tables: means with 95% confidence intervals over frames,
the markdown table of the paper's metrics, and the localisation metrics per letter."""

from typing import Any

import numpy as np


def mean_and_interval(values: np.ndarray) -> tuple[float, float, int]:
  """Mean, half-width of the 95% confidence interval (1.96 standard errors) and count of the
  finite values."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if not len(v):
    return float('nan'), float('nan'), 0
  half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float('nan')
  return float(v.mean()), float(half), len(v)


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
  """Rows (method, metric, mean, 95% interval, frames) and the markdown of the suite's table."""
  rows = []
  for method, per_frame in result['per_frame'].items():
    for metric, values in per_frame.items():
      if metric.endswith('/curve'):
        continue
      if metric == 'randomisation':
        values = np.asarray(values)[:, -1]  # every layer randomized
        metric = 'randomisation (all layers)'
      mean, half, count = mean_and_interval(values)
      rows.append({'method': method, 'metric': metric, 'mean': mean, 'ci95': half,
                   'frames': count})
  shown = [('bin/deletion/morf/auc', 'deletion AUC, bins (lower: faithful)'),
           ('bin/insertion/morf/auc', 'insertion AUC, bins (higher)'),
           ('column/deletion/morf/aopc', 'AOPC deletion, time columns (higher)'),
           ('patch/deletion/morf/aopc', 'AOPC deletion, 8x8 patches (higher)'),
           ('randomisation (all layers)', 'MPRT Spearman, all layers random (lower)'),
           ('random_logit', 'random logit Spearman (lower)'),
           ('max_sensitivity', 'max-sensitivity (lower)'),
           ('localisation/mass', 'relevance mass in span (higher)'),
           ('localisation/pointing', 'pointing game (higher)'),
           ('localisation/rank', 'relevance rank in span (higher)'),
           ('sparseness', 'Gini sparseness')]
  table = {(r['method'], r['metric']): r for r in rows}
  present = [(k, label) for k, label in shown if any(m == k for _, m in table)]
  lines = ['| method | ' + ' | '.join(label for _, label in present) + ' |',
           '|---' * (len(present) + 1) + '|']
  for method in result['per_frame']:
    cells = []
    for key, _ in present:
      r = table.get((method, key))
      cells.append('—' if r is None or not np.isfinite(r['mean']) else
                   f"{r['mean']:.3f} ± {r['ci95']:.3f}" if np.isfinite(r['ci95']) else
                   f"{r['mean']:.3f}")
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  random_order = [f"{k}: AUC {np.mean(np.trapezoid(v, result['fractions'], axis=1)):.3f}"
                  for k, v in result['random_order'].items() if k.startswith('bin/')]
  chance = [r['mean'] for r in rows if r['metric'] == 'localisation/chance'][:1]
  text = '\n'.join(lines)
  text += (f"\n\n{result['frames']} frames of {result['utterances']} utterances "
           f"({result['timed_frames']} with the letter's true span); mean ± 95% confidence "
           'interval over frames. Removal in random order, bins: ' + '; '.join(random_order)
           + '.')
  if chance:
    text += (' Share of the window inside the true span (chance for mass and rank): '
             f'{chance[0]:.3f}.')
  if result['utterance_deletion']:
    fractions = result['settings']['utterance_fractions']
    text += ('\n\nUtterance-level deletion (SPES): LER after setting the top p of an '
             "utterance's summed relevance to 0.\n\n| method | " +
             ' | '.join(f'p = {p:g}' for p in fractions) + ' |\n' + '|---' * (len(fractions) + 1)
             + '|\n' + '\n'.join(f'| {m} | ' + ' | '.join(f'{v:.3f}' for v in ler) + ' |'
                                 for m, ler in result['utterance_deletion'].items()))
  for note in result['notes']:
    text += f'\n\nNote: {note}.'
  return rows, text


def by_letter(result: dict[str, Any]) -> list[tuple[str, str, str, float, int]]:
  """(method, metric, letter, mean, frames) of every localisation metric per predicted letter."""
  letters = np.array(result['letters'])
  rows = []
  for method, per_frame in result['per_frame'].items():
    for metric, values in per_frame.items():
      if metric.startswith('localisation/') and metric != 'localisation/chance':
        for letter in sorted(set(letters[np.isfinite(values)])):
          v = values[letters == letter]
          rows.append((method, metric.split('/')[1], letter, np.nanmean(v),
                       int(np.isfinite(v).sum())))
  return rows
