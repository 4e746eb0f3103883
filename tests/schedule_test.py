"""The training schedule: the step time of a run's first steps, the steps that fit a budget,
and a fixed schedule kept in the workdir."""

import json

import pytest

from navai_jax.training import schedule


def _lines(per_step, compiling):
  """metrics.jsonl lines every 10 steps up to 100; the window 40-50 compiled a new shape."""
  out, elapsed = [], compiling
  for step in range(10, 101, 10):
    elapsed += 10 * per_step + (3.0 if step == 50 else 0.0)
    out.append(json.dumps({'step': step, 'loss': 1.0, 'elapsed_seconds': elapsed}))
  out.append(json.dumps({'step': 100, 'split': 'dev', 'ler': 0.5, 'elapsed_seconds': 0}))
  return out


def test_the_step_time_is_the_median_window_and_the_rest_is_compiling():
  per_step, compiling, spent = schedule.step_time(_lines(0.2, 12.0))
  assert per_step == pytest.approx(0.2)
  assert compiling == pytest.approx(12.0 + 3.0)
  assert spent == pytest.approx(12.0 + 3.0 + 100 * 0.2)


def test_the_sized_schedule_fits_the_budget_in_quanta():
  # 30 minutes: 1800 s - 35 s done - 15 s compiling again = 1750 s = 8750 steps + 100 done.
  chosen = schedule.sized(0.2, 15.0, 35.0, 30.0, preset_steps=20000)
  assert chosen['num_steps'] == 8500
  assert schedule.sized(0.2, 15.0, 35.0, 30.0, preset_steps=4000)['num_steps'] == 4000
  assert schedule.sized(0.2, 15.0, 35.0, 0.5, preset_steps=4000)['num_steps'] == 500


def test_missing_steps_and_another_kept_schedule_are_refused(tmp_path):
  with pytest.raises(ValueError, match='lacks the training time of steps 20, 30'):
    schedule.step_time(_lines(0.2, 1.0)[:5])
  assert schedule.fixed(tmp_path, 4500) == {'num_steps': 4500} == schedule.read(tmp_path)
  assert schedule.fixed(tmp_path, 4500) == {'num_steps': 4500}
  with pytest.raises(ValueError, match='trained to a schedule of 4500 steps'):
    schedule.fixed(tmp_path, 300)
