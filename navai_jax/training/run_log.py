"""The run's log: one JSON line per logged step and per evaluation in WORKDIR/metrics.jsonl,
and the same numbers as TensorBoard scalars in WORKDIR/tensorboard."""

import json
import os
from pathlib import Path
from typing import Any

import ml_collections
import tqdm

from navai_jax.core import files

METRICS_FILE = 'metrics.jsonl'


def keep_metrics_until(path: Path, step: int, train_config: ml_collections.ConfigDict) -> None:
  """Keeps the lines that an uninterrupted run has written by the end of `step`.

  Drops what a run wrote after its last checkpoint (`step`) before it died, and the lines that
  an early stop (`max_minutes`) wrote at `step` off the regular `log_every` / `eval_every`
  steps: a resumed run writes the regular lines itself, so its file equals an uninterrupted
  run's.
  """
  if not path.is_file():
    return
  t = train_config
  kept = []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # The last line of a run killed while writing it.
      continue
    at = record['step']
    every = t.eval_every if 'ler' in record else t.log_every
    early = at == step < t.num_steps and (not every or at % every)
    if at <= step and not early:
      kept.append(line + '\n')
  files.write_text(path, ''.join(kept))


TENSORBOARD_DIR = 'tensorboard'


def tensorboard_writer(workdir: Path):
  """flax's TensorBoard writer on `WORKDIR/tensorboard`; None (said once) where TensorFlow,
  which writes the event files, cannot be imported."""
  # TensorFlow only writes the event files here; its oneDNN kernels are never used, and their
  # start-up notice is the only line it would print.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  try:
    from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    tqdm.tqdm.write(f'No TensorBoard event files ({e}); metrics.jsonl has every number.')
    return None
  return tensorboard.SummaryWriter(str(workdir / TENSORBOARD_DIR), auto_flush=False)


def write_scalars(writer, record: dict[str, Any]) -> None:
  """One metrics.jsonl record as TensorBoard scalars: `train/NAME`, or `SPLIT/NAME` for an
  evaluation."""
  group = record.get('split', 'train')
  for name, value in record.items():
    if name not in ('step', 'split') and isinstance(value, (int, float)):
      writer.scalar(f'{group}/{name}', value, record['step'])
  writer.flush()


class RunLog:
  """The metrics file (and TensorBoard) of a run resumed at `step`: lines an uninterrupted run
  would not have written by then are dropped first (`keep_metrics_until`). Writes nothing
  unless `enabled` (processes other than the first)."""

  def __init__(self, workdir: Path, step: int, train_config: ml_collections.ConfigDict,
               enabled: bool = True):
    self.path, self.enabled = Path(workdir) / METRICS_FILE, enabled
    self.board = None
    if enabled:
      keep_metrics_until(self.path, step, train_config)
      if train_config.tensorboard:
        self.board = tensorboard_writer(Path(workdir))

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self.board is not None:
      write_scalars(self.board, record)

  def close(self) -> None:
    if self.board is not None:
      self.board.close()
