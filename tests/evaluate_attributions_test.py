"""The attribution suite's script: its table and files, and one line for an unknown name."""

import json

import numpy as np


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
  done = run_script('evaluate_attributions', workdir,
                 "--config.attributions.methods=('sensitivty',)")
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert "config.attributions.methods must be a non-empty subset of" in done.stderr
