"""The attribution suite's script: its table and files, and one line for an unknown name."""

import json

import ml_collections
import numpy as np
import pytest

from navai_jax.stages import evaluate_attributions


def test_attribution_evaluation_script_writes_its_table_and_refuses_unknown_names(
    stage_run, tmp_path, saved_run, run_script):
  root, config, variables = stage_run
  workdir = tmp_path / 'run'
  saved_run(workdir, config, variables)
  done = run_script('evaluate_attributions', workdir,
                 "--config.attributions.methods=('gradient_x_input', 'random')",
                 "--config.attributions.metrics=('deletion', 'sparseness')",
                 "--config.attributions.granularities=('column',)")
  assert done.returncode == 0, done.stderr[-3000:]
  out = workdir / 'attributions'
  saved = json.loads((out / 'attributions.json').read_text())
  assert saved['frames'] == config.attributions.max_frames
  assert sorted(saved['per_frame']) == ['gradient_x_input', 'random']
  table = (out / 'attributions.md').read_text()
  assert '| gradient_x_input |' in table and '| random |' in table and table in done.stdout + '\n'
  rows = (out / 'attributions.csv').read_text().splitlines()
  mean = np.mean(saved['per_frame']['random']['sparseness'])
  assert any(r.startswith('random,sparseness,') and abs(float(r.split(',')[2]) - mean) < 1e-5
             for r in rows)
  assert (out / 'attribution_curves.png').stat().st_size > 0
  # An unknown name, in the words the script ends with (its exit in one line: `cli_test`).
  config = ml_collections.ConfigDict(config.to_dict())
  config.attributions.methods = ('sensitivty',)
  with pytest.raises(ValueError, match='config.attributions.methods must be a non-empty subset '
                                       'of'):
    evaluate_attributions.run(config, variables, 3, str(tmp_path / 'refused'))
