"""Are the maps faithful? Every attribution method scored by deletion/insertion,
randomisation, robustness, localisation and sparseness (SPEC §11)."""

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.faithfulness import suite
from navai_jax.faithfulness import summary
from navai_jax.outputs import figures
from navai_jax.stages import common

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        progress: bool = False) -> tuple[dict, str]:
  """The attribution-evaluation suite (`suite.evaluate_attributions`, settings `config.attributions`).

  Writes into `out_dir`: `attributions.md` (the table: method x metric, mean and 95%
  confidence interval over frames), `attributions.csv` (every row), `attributions.json`
  (every number, per-frame values included), `attributions_by_letter.csv` (the localisation
  metrics per predicted letter, where true spans exist), `attribution_curves.png` (mean
  deletion and insertion curves per granularity) and `attribution_randomisation.png`
  (Spearman against the number of layers randomized). Returns the result and the markdown.
  """
  common.start(config, out_dir)
  os.makedirs(out_dir, exist_ok=True)
  say = (lambda name: print(f'  {name}', flush=True)) if progress else (lambda _: None)
  result = suite.evaluate_attributions(config, variables, progress=say)
  rows, text = summary.table(result)
  text = (f'Attribution evaluation, {config.attributions.split} split, checkpoint step '
          f'{step}.\n\n' + text)
  files.write_text(os.path.join(out_dir, 'attributions.md'), text + '\n')
  files.write_text(os.path.join(out_dir, 'attributions.csv'), 'method,metric,mean,ci95,frames\n'
                   + ''.join(f"{r['method']},{r['metric']},{r['mean']:.6g},{r['ci95']:.6g},"
                             f"{r['frames']}\n" for r in rows))
  by_letter = summary.by_letter(result)
  if by_letter:
    files.write_text(os.path.join(out_dir, 'attributions_by_letter.csv'),
                     'method,metric,letter,mean,frames\n' + ''.join(
                         f'{m},{k},{l},{v:.6g},{n}\n' for m, k, l, v, n in by_letter))
  as_json = jax.tree.map(lambda v: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v,
                         dict(result, checkpoint_step=step))
  files.write_text(os.path.join(out_dir, 'attributions.json'), json.dumps(as_json))
  if result['random_order']:
    figures.attribution_curves(result, os.path.join(out_dir, 'attribution_curves.png'))
  if any('randomisation' in v for v in result['per_frame'].values()):
    figures.attribution_randomisation(result,
                                      os.path.join(out_dir, 'attribution_randomisation.png'))
  return result, text
