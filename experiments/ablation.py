"""What each engine and each augmentation adds: one short training run per row, all on one
corpus, each read on the held-out test voices and on the human voice.

  python experiments/ablation.py --corpus=data/corpus --human=data/asterisk \
      --workdir=runs/ablation --steps=1500

Rows (`--rows`, default all): `espeak` (its speakers only: `config.data.train_engines`),
`espeak+flite`, `espeak+flite+piper`, `all` (every training speaker of the corpus, the main
job's data; on a corpus made with `--held_out_engines=`, Pico's voices too, so that
`espeak+flite+piper` against `all` is what Pico adds), `recorded` (every training speaker but
eSpeak's: the voices built from recorded speakers alone), and `all` with one augmentation
each: `+speed` (0.9/1.0/1.1), `+rooms` (half the utterances reverberated), `+noise`
(white noise at 10-30 dB SNR), `+warp` (vocal tract length perturbation, factors 0.9-1.1);
and rows with what follows an `@`, which combine (`all@per_bin@mels40@seed1`): `@seedN`, the row
from another seed (initial weights and batch order), which shows how far one run of a row lies
from another; `@wide`, twice the channels of every layer (128/512, about four times the
multiply-adds), which shows what a larger model buys at the same steps; `@mels40`, 40 mel bins
instead of SPEC §1's 128 (frequency masks 4 bins wide instead of 12), whose filters, 147 Hz wide
below 1 kHz against 47, smooth over most harmonics of a voice's pitch; `@per_bin`, each mel
bin's mean over the utterance taken away (`features.normalize`), so that no voice's or
channel's long-term spectrum reaches the network; `@other`, the corpus's split of recorded
people speaking other languages trained on beside its own training speech
(`experiments/make_other_languages.py` writes it); `@other_heads`, the same, each language
read through an output layer of its own (`train.language_heads`); `@other_unscored`, the same
split in the batches with no loss of its own (`train.other_languages_weight=0`); `@sortagrad`, the
first epoch from the shortest utterances to the longest (`data.sorted_epochs=1`); `@lrX`, the
peak learning rate X instead of the preset's (`@lr5e-3`: the rate the `small` preset had before
2.5e-3, that of the rows in docs/results.md trained before it); `@advX`, an engine adversary
of weight X > 0 (`train.engine_adversary`: the layers learn what every engine's voices share);
`@dropX`, dropout of rate 0 < X < 1 after each middle layer (`model.dropout`); `@wdX`, AdamW's
weight decay X >= 0 instead of the preset's (`train.weight_decay`; `@wd0`: none); `@gateX`, each
utterance's features normalized by the statistics of its speech alone, the frames within X > 0 dB
of its loudest (`features.speech_gate_db`), so that silence around the words does not move them;
`@phonX`, a phoneme head of weight X > 0 (`train.phoneme_head`: a linear layer over the last
hidden layer learns from the corpus's true times which phoneme sounds at each frame);
`@phonlayerN`, the head over layer N instead (`train.phoneme_layer`); and `@phonstepsN`, its loss
for the first N steps only (`train.phoneme_steps`).
The default rows are the nine above and `all@seed1`, `all@wide`, `all@mels40` and `all@per_bin`.
Every row trains the `--preset` model for `--steps` steps with the same schedule, from seed 0
unless it names another; a row's folder is WORKDIR/ROW, and rerunning the command resumes what
is unfinished, loading what XLA compiled before (WORKDIR/xla_cache, `core.xla_cache`; rows do
not share programs, since seeds and length buckets differ). Writes WORKDIR/ablation.md (LER/WER on
the test split, per engine, and on the human voice) and prints it.
"""

import json
import os
import re
import subprocess
import sys
from typing import Optional

from absl import app
from absl import flags

from navai_jax.core import files
from navai_jax.core import xla_cache

ROWS = {
    'espeak': ["--config.data.train_engines=('espeak',)"],
    'espeak+flite': ["--config.data.train_engines=('espeak', 'flite')"],
    'espeak+flite+piper': ["--config.data.train_engines=('espeak', 'flite', 'piper')"],
    'all': [],
    'recorded': ["--config.data.train_engines=('flite', 'piper', 'pico', 'festival', 'mbrola', "
                 "'mbrola_accented', 'rhvoice', 'kokoro', 'silero')"],  # every engine but eSpeak
    'all+speed': ['--config.augment.speeds=(0.9, 1.0, 1.1)'],
    'all+rooms': ['--config.augment.reverb=0.5'],
    'all+noise': ['--config.augment.noise_snr_db=(10.0, 30.0)'],
    'all+warp': ['--config.augment.warp=0.1'],
}
# What follows a row's `@`: each changes the model or its input, and they combine
# (`all@per_bin@mels40@seed1`).
MODIFIERS = {
    'wide': ['--config.model.channels=128', '--config.model.wide_channels=512'],
    'mels40': ['--config.features.num_mels=40', '--config.augment.freq_mask_width=4'],
    'per_bin': ['--config.features.normalize=per_bin'],
    'other': ["--config.data.train_split=train+other_languages"],
    'other_heads': ["--config.data.train_split=train+other_languages",
                    '--config.train.language_heads=True'],
    'other_unscored': ["--config.data.train_split=train+other_languages",
                       '--config.train.other_languages_weight=0.0'],
    'sortagrad': ['--config.data.sorted_epochs=1'],
}
DEFAULT_ROWS = [*ROWS, 'all@seed1', 'all@wide', 'all@mels40', 'all@per_bin']

_CORPUS = flags.DEFINE_string('corpus', 'data/corpus', 'The corpus folder (make_corpus.py).')
_HUMAN = flags.DEFINE_string('human', 'data/asterisk', 'The human voice (make_human_set.py); '
                             "'' for none.")
_WORKDIR = flags.DEFINE_string('workdir', 'runs/ablation', 'One training run per row below it.')
_STEPS = flags.DEFINE_integer('steps', 1500, 'Training steps of every row.', lower_bound=1)
_ROWS = flags.DEFINE_list('rows', DEFAULT_ROWS, f'Rows among {", ".join(ROWS)}, each with any '
                          f'of @{", @".join(MODIFIERS)}, @seedN, @lrX, @advX, @dropX, @wdX, '
                          '@gateX, @phonX, @phonlayerN, @phonstepsN.')
_PRESET = flags.DEFINE_string('preset', 'small', 'Model preset of every row.')

EXPERIMENTS = os.path.dirname(os.path.abspath(__file__))


def _script(name: str, *args: str) -> None:
  print(f'\n=== {name} {" ".join(args)}', flush=True)
  if subprocess.run([sys.executable, os.path.join(EXPERIMENTS, name), *args],
                    env=xla_cache.environment(_WORKDIR.value)).returncode:
    sys.exit(f'ablation.py: {name} failed; rerun the same command to resume.')


def _rates(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def row_flags(row: str) -> Optional[list[str]]:
  """train.py's flags of a row: one of ROWS, then any of MODIFIERS, `seedN` (the row from seed N),
  `lrX` (peak learning rate X > 0), `advX` (engine adversary of weight X > 0), `dropX`
  (dropout of rate 0 < X < 1), `wdX` (weight decay X >= 0) and `gateX` (features normalized over
  the frames within X > 0 dB of the loudest), `phonX` (phoneme head of weight X > 0) and
  `phonlayerN` (the head over layer N) and `phonstepsN` (its loss for the first N steps only),
  each after an `@` and at most once; None for anything else."""
  name, *modifiers = row.split('@')
  if name not in ROWS or len(set(modifiers)) < len(modifiers):
    return None
  overrides = list(ROWS[name])
  for modifier in modifiers:
    if modifier in MODIFIERS:
      overrides += MODIFIERS[modifier]
    elif seed := re.fullmatch(r'seed([0-9]+)', modifier):
      overrides.append(f'--config.seed={int(seed[1])}')
    elif (rate := re.fullmatch(r'lr([0-9]*\.?[0-9]+(e-?[0-9]+)?)', modifier)) and float(rate[1]):
      overrides.append(f'--config.train.learning_rate={rate[1]}')  # a positive rate
    elif (weight := re.fullmatch(r'adv([0-9]*\.?[0-9]+(e-?[0-9]+)?)', modifier)) and float(
        weight[1]):
      overrides.append(f'--config.train.engine_adversary={weight[1]}')  # a positive weight
    elif (rate := re.fullmatch(r'drop(0?\.[0-9]+)', modifier)) and float(rate[1]):
      overrides.append(f'--config.model.dropout={rate[1]}')  # 0 < rate < 1
    elif decay := re.fullmatch(r'wd([0-9]*\.?[0-9]+(e-?[0-9]+)?)', modifier):
      overrides.append(f'--config.train.weight_decay={decay[1]}')  # >= 0
    elif (gate := re.fullmatch(r'gate([0-9]*\.?[0-9]+)', modifier)) and float(gate[1]):
      overrides.append(f'--config.features.speech_gate_db={gate[1]}')  # > 0 dB
    elif (weight := re.fullmatch(r'phon([0-9]*\.?[0-9]+(e-?[0-9]+)?)', modifier)) and float(
        weight[1]):
      overrides.append(f'--config.train.phoneme_head={weight[1]}')  # a positive weight
    elif layer := re.fullmatch(r'phonlayer([1-9][0-9]*)', modifier):
      overrides.append(f'--config.train.phoneme_layer={layer[1]}')
    elif steps := re.fullmatch(r'phonsteps([1-9][0-9]*)', modifier):
      overrides.append(f'--config.train.phoneme_steps={steps[1]}')
    else:
      return None
  if any(sum(f.startswith(f'--config.{field}=') for f in overrides) > 1
         for field in ('seed', 'train.learning_rate', 'train.engine_adversary',
                       'model.dropout', 'train.weight_decay', 'features.speech_gate_db',
                       'train.phoneme_head', 'train.phoneme_layer', 'train.phoneme_steps')):
    return None
  return overrides


def main(argv):
  del argv
  unknown = [r for r in _ROWS.value if row_flags(r) is None]
  if unknown:
    sys.exit(f'ablation.py: unknown row(s) {", ".join(unknown)}; rows: {", ".join(ROWS)}, '
             f'each with any of @{", @".join(MODIFIERS)}, @seedN, @lrX, @advX, @dropX, @wdX, '
             '@gateX, @phonX, @phonlayerN, @phonstepsN, once.')
  config = f'--config={os.path.dirname(EXPERIMENTS)}/navai_jax/configs/default.py:{_PRESET.value}'
  lines = ['| training | test LER | test WER | LER per test engine | human LER | human WER |',
           '|---|---|---|---|---|---|']
  for row in _ROWS.value:
    workdir = os.path.join(_WORKDIR.value, row)
    _script('train.py', config, f'--workdir={workdir}',
            f'--config.data.source=folder:{_CORPUS.value}', '--config.data.reader=direct',
            f'--config.train.num_steps={_STEPS.value}',
            '--config.train.eval_every=0', *row_flags(row))
    if not os.path.exists(os.path.join(workdir, 'eval_test.json')):
      _script('evaluate.py', f'--workdir={workdir}', '--split=test')
    test = _rates(os.path.join(workdir, 'eval_test.json'))
    engines = ', '.join(f'{e} {r["ler"]:.3f}' for e, r in test.get('per_engine', {}).items())
    human = ('', '')
    if _HUMAN.value:
      found = lambda: [f for f in os.listdir(workdir)
                       if f.startswith('eval_folder_') and f.endswith('_human.json')]
      if not found():
        _script('evaluate.py', f'--workdir={workdir}', '--split=human',
                f'--data_source=folder:{_HUMAN.value}')
      rates = _rates(os.path.join(workdir, found()[0]))
      human = (f'{rates["ler"]:.3f}', f'{rates["wer"]:.3f}')
    lines.append(f'| {row} | {test["ler"]:.3f} | {test["wer"]:.3f} | {engines} | {human[0]} | '
                 f'{human[1]} |')
  table = (f'Ablation: `{_PRESET.value}`, {_STEPS.value} steps per row, corpus '
           f'{_CORPUS.value}.\n\n' + '\n'.join(lines) + '\n')
  files.write_text(os.path.join(_WORKDIR.value, 'ablation.md'), table)
  print('\n' + table)


if __name__ == '__main__':
  app.run(main)
