"""How many training steps a job runs: a fixed number (the default: the same model on any
machine of the same processor model), or as many as fit a time budget on this machine, measured
from the step time of a run's first steps (`--train_minutes` of experiments/main.py; a model
that depends on the machine's speed). Either is kept in WORKDIR/schedule.json, so a rerun
resumes the same one."""

import json
from pathlib import Path
import statistics
from typing import Optional

SCHEDULE_FILE = 'schedule.json'
# Steps measured for the step time: windows of MEASURE_EVERY steps between these two steps,
# inside the warmup, where the learning rate does not depend on the schedule's length.
MEASURE_FROM, MEASURE_TO, MEASURE_EVERY = 20, 100, 10
SCHEDULE_QUANTUM = 500
# The 2-core reference machine (docs/results.md): a `small` training step, and the stages after
# training (evaluation to report) at the default stage sizes. Only for telling how long the
# job is expected to take; nothing the job computes depends on them.
REFERENCE_STEP_SECONDS, REFERENCE_REST_MINUTES = 0.150, 8.0


def read(workdir: str | Path) -> Optional[dict]:
  """The schedule kept in `workdir`, or None."""
  path = Path(workdir) / SCHEDULE_FILE
  return json.loads(path.read_text()) if path.is_file() else None


def write(workdir: str | Path, schedule: dict) -> None:
  Path(workdir).mkdir(parents=True, exist_ok=True)
  (Path(workdir) / SCHEDULE_FILE).write_text(json.dumps(schedule, indent=1) + '\n')


def fixed(workdir: str | Path, steps: int) -> dict:
  """`{'num_steps': steps}`, kept in `workdir`; ValueError where it was trained to another."""
  kept = read(workdir)
  if kept is not None and kept['num_steps'] != steps:
    raise ValueError(f'{workdir} was trained to a schedule of {kept["num_steps"]} steps '
                     f'({Path(workdir) / SCHEDULE_FILE}), not {steps}; pass that --train_steps '
                     'to resume it, or another --workdir.')
  schedule = {'num_steps': steps}
  write(workdir, schedule)
  return schedule


def step_time(metrics_lines: list[str]) -> tuple[float, float, float]:
  """`(seconds per step, seconds compiling, training seconds at MEASURE_TO)` of a run's
  metrics.jsonl lines logged every MEASURE_EVERY steps.

  The step time is the median over the windows of MEASURE_EVERY steps between MEASURE_FROM and
  MEASURE_TO, so that a window in which a new batch shape was compiled does not count; what
  the first steps spent beyond that step time is compiling.
  """
  elapsed = {}
  for line in metrics_lines:
    record = json.loads(line)
    if 'loss' in record:
      elapsed[record['step']] = record['elapsed_seconds']
  marks = range(MEASURE_FROM, MEASURE_TO + 1, MEASURE_EVERY)
  if any(m not in elapsed for m in marks):
    raise ValueError(f'metrics.jsonl lacks the training time of steps {MEASURE_FROM}, '
                     f'{MEASURE_FROM + MEASURE_EVERY}, ..., {MEASURE_TO}, which size the '
                     'schedule; remove the workdir (or pass --workdir=another) and run again.')
  per_step = statistics.median((elapsed[b] - elapsed[a]) / MEASURE_EVERY
                               for a, b in zip(marks, marks[1:]))
  return per_step, max(0.0, elapsed[MEASURE_TO] - MEASURE_TO * per_step), elapsed[MEASURE_TO]


def sized(per_step: float, compiling: float, spent: float, minutes: float,
          preset_steps: int) -> dict:
  """The schedule that fits `minutes` of training, `spent` seconds of which are done: what is
  left, less another `compiling` (the next process compiles again), in steps of `per_step`,
  rounded down to SCHEDULE_QUANTUM steps, at least one quantum, at most `preset_steps`."""
  fits = MEASURE_TO + int((minutes * 60 - spent - compiling) / per_step)
  steps = max(SCHEDULE_QUANTUM, min(preset_steps, fits // SCHEDULE_QUANTUM * SCHEDULE_QUANTUM))
  return {'num_steps': steps, 'seconds_per_step': per_step, 'compile_seconds': compiling,
          'train_minutes': minutes, 'preset_num_steps': preset_steps}
