"""The main job: from nothing to a trained recognizer and what it listens for.

  ./run.sh                      # = python experiments/main.py, inside .venv

Stages, each one an experiment script run in its own process (so each can also be run, and
rerun, alone):

1. `make_corpus.py`     synthesize the offline corpus (LibriSpeech layout + word/phoneme times)
2. `train.py`           train the `small` Wav2Letter for --train_minutes
3. `evaluate.py`        letter and word error rate on the held-out voices (test split)
4. `introspect.py`      Figure 2: sensitivity and LRP of two frames predicted as 'a'
5. `activation_max.py`  Figure 1: optimal inputs of neurons of layers 1, 2, 11 and 12
6. `navai.py`           Figure 3, Supplement A, t-maps, phoneme classes, sounds, and the
                        alignment-quality table in milliseconds (dev split)

Every stage resumes: rerunning the command after an interruption keeps the corpus, the
checkpoints and a partial NAvAI pass, and goes on where it stopped. README gives how long it
takes and what it reaches with the defaults (6 hours of speech, the 8000-step `small` schedule).
"""

import json
import os
from pathlib import Path
import subprocess
import sys
import time

from absl import app
from absl import flags

_CORPUS_DIR = flags.DEFINE_string('corpus_dir', 'data/espeak_corpus', 'Corpus folder.')
_HOURS = flags.DEFINE_float('hours', 6.0, 'Hours of synthesized training speech.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/small', 'Training run folder.')
_PRESET = flags.DEFINE_enum('preset', 'small', ['tiny', 'small', 'paper'], 'Model config preset.')
_TRAIN_MINUTES = flags.DEFINE_float(
    'train_minutes', 20.0, 'Training time budget in minutes (a slower machine stops earlier in '
    'the schedule).')
_NAVAI_SPLIT = flags.DEFINE_string('navai_split', 'dev', 'Split that NAvAI averages over.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of corpus and training.')

flags.register_validator('hours', lambda h: 0 < h <= 1000, '--hours must be in (0, 1000].')
flags.register_validator('train_minutes', lambda m: m > 0, '--train_minutes must be > 0.')

EXPERIMENTS = Path(__file__).resolve().parent


def run_stage(number: int, title: str, script: str, *args: str) -> float:
  """Runs one experiment script; stops the job with its exit status if it fails."""
  print(f'\n=== {number}. {title}: {script} {" ".join(args)}', flush=True)
  start = time.time()
  done = subprocess.run([sys.executable, str(EXPERIMENTS / script), *args])
  if done.returncode:
    sys.exit(f'main.py: stage {number} ({script}) failed with exit status {done.returncode}; '
             'rerun the same command to resume from where it stopped.')
  return time.time() - start


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  workdir, corpus = _WORKDIR.value, _CORPUS_DIR.value
  config = f'--config={EXPERIMENTS.parent}/navai_jax/configs/default.py:{_PRESET.value}'
  seconds = {}
  seconds['corpus'] = run_stage(1, 'Offline speech corpus', 'make_corpus.py',
                                f'--out_dir={corpus}', f'--hours={_HOURS.value}',
                                f'--seed={_SEED.value}')
  seconds['train'] = run_stage(2, 'Training', 'train.py', config, f'--workdir={workdir}',
                               f'--config.data.source=folder:{corpus}',
                               f'--config.seed={_SEED.value}',
                               f'--config.train.max_minutes={_TRAIN_MINUTES.value}')
  seconds['evaluate'] = run_stage(3, 'Evaluation on held-out voices', 'evaluate.py',
                                  f'--workdir={workdir}', '--split=test')
  seconds['introspect'] = run_stage(4, 'Figure 2 (sensitivity, LRP)', 'introspect.py',
                                    f'--workdir={workdir}', '--split=dev', '--letter=a')
  seconds['activation_max'] = run_stage(5, 'Figure 1 (activation maximization)',
                                        'activation_max.py', f'--workdir={workdir}',
                                        '--split=dev', '--letter=a')
  seconds['navai'] = run_stage(6, 'NAvAI (Figure 3, Supplement A, alignment quality)',
                               'navai.py', f'--workdir={workdir}',
                               f'--config.navai.split={_NAVAI_SPLIT.value}')
  result = json.loads((Path(workdir) / 'eval.json').read_text())
  print('\n=== Done in {:.1f} minutes ({})'.format(
      sum(seconds.values()) / 60, ', '.join(f'{k} {v / 60:.1f}' for k, v in seconds.items())))
  print(f"Test split (held-out voices): LER {result['ler']:.3f}, WER {result['wer']:.3f} "
        f"over {result['num_utterances']} utterances, checkpoint step {result['step']}.")
  where = {
      'corpus (FLAC, transcripts, word/phoneme timings)': corpus,
      'run (config.json, checkpoints/, metrics.jsonl, eval.json)': workdir,
      'Figure 2': os.path.join(workdir, 'introspect', 'figure2_a.png'),
      'Figure 1': os.path.join(workdir, 'activation_max', 'figure1_a.png'),
      'Figure 3': os.path.join(workdir, 'navai', 'figure3.png'),
      'Supplement A, t-maps, phonemes': os.path.join(workdir, 'navai', 'supplement_a_*.png'),
      'alignment quality (ms)': os.path.join(workdir, 'navai', 'quality.md'),
      'sounds of the patterns': os.path.join(workdir, 'navai', 'sound', '*.wav'),
  }
  for what, path in where.items():
    print(f'  {what}: {path}')


if __name__ == '__main__':
  app.run(main)
