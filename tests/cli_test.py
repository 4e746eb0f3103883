"""Script start-up: input errors become one line, config overrides reach only am and navai."""

import ast
import os
from pathlib import Path
import subprocess
import sys

import pytest

from navai_jax.training import checkpoints
from navai_jax.training import train
from navai_jax.configs import default
from navai_jax.speech import voices


ROOT = Path(__file__).resolve().parents[1]


def test_run_turns_value_errors_into_one_line(tmp_path):
  script = tmp_path / 'fails.py'
  script.write_text('from navai_jax.stages import cli\n\n'
                    'def main(argv):\n  raise ValueError("--letter must be a-z, got 7")\n\n'
                    'cli.run(main)\n')
  done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip() == 'fails.py: --letter must be a-z, got 7'


def test_apply_overrides_sets_inference_fields_and_refuses_the_rest():
  config = checkpoints.apply_overrides(default.get_config('tiny'), {
      'navai.split': 'train', 'navai.methods': ('none',), 'am.steps': 3})
  assert config.navai.split == 'train' and config.navai.methods == ('none',)
  assert config.am.steps == 3
  with pytest.raises(ValueError, match="'train' settings describe what was trained"):
    checkpoints.apply_overrides(default.get_config('tiny'), {'train.learning_rate': 1.0})
  with pytest.raises(ValueError, match='--config.navai.splt: no such field'):
    checkpoints.apply_overrides(default.get_config('tiny'), {'navai.splt': 'dev'})


@pytest.mark.parametrize('flag, message', [
    ('--config.train.learnin_rate=1',
     'bad --config flag: \'learnin_rate\' Did you mean "learning_rate" instead'),
    ('--config=navai_jax/configs/default.py:huge', "Unknown config preset 'huge'"),
    ('--config.model.channels=0', 'config.model.channels must be >= 1, got 0'),
])
def test_bad_config_flags_end_in_one_line(tmp_path, flag, message):
  done = subprocess.run([sys.executable, 'experiments/train.py', f'--workdir={tmp_path}', flag],
                        cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
  assert len(done.stderr.strip().splitlines()) == 1


def test_ablation_rows_are_valid_settings_and_an_unknown_row_is_named():
  source = (ROOT / 'experiments' / 'ablation.py').read_text()
  tables = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(source).body
            if isinstance(n, ast.Assign) and n.targets[0].id in ('ROWS', 'MODIFIERS')}
  assert len(tables['ROWS']) == 9 and len(tables['MODIFIERS']) == 7
  assert tables['ROWS']['recorded'] == [  # every engine but eSpeak, as voices knows them
      f"--config.data.train_engines={tuple(e for e in voices.ENGINES if e != 'espeak')}"]
  for row, overrides in [*tables['ROWS'].items(), *tables['MODIFIERS'].items()]:
    config = default.get_config('small')
    for flag in overrides:
      path, value = flag[len('--config.'):].split('=', 1)
      *sections, field = path.split('.')
      owner = config[sections[0]] if sections else config
      assert field in owner, (row, flag)
      owner[field] = value if isinstance(owner[field], str) else ast.literal_eval(value)
    train.check_config(config)  # every row's settings are in range
  # Modifiers combine, in the order given.
  done = subprocess.run([sys.executable, '-c', 'import ablation; print(repr([ablation.row_flags(r) '
                         "for r in ('all+speed@per_bin@mels40@seed2', 'all@seed1', "
                         "'all@lr5e-3@seed1', 'all@other@seed3', 'all@other_heads', "
                         "'all@adv0.2@seed3', 'all@drop.2@seed1', 'all@wd0.3@seed3', 'all@wd0', "
                         "'all@gate40@seed3', 'all@phon0.5@phonlayer6@seed1', "
                         "'all@phon1@phonsteps1500')]))"],
                        cwd=ROOT / 'experiments', env={**os.environ, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=120)
  assert ast.literal_eval(done.stdout) == [
      ['--config.augment.speeds=(0.9, 1.0, 1.1)', '--config.features.normalize=per_bin',
       '--config.features.num_mels=40', '--config.augment.freq_mask_width=4', '--config.seed=2'],
      ['--config.seed=1'], ['--config.train.learning_rate=5e-3', '--config.seed=1'],
      ['--config.data.train_split=train+other_languages', '--config.seed=3'],
      ['--config.data.train_split=train+other_languages', '--config.train.language_heads=True'],
      ['--config.train.engine_adversary=0.2', '--config.seed=3'],
      ['--config.model.dropout=.2', '--config.seed=1'],
      ['--config.train.weight_decay=0.3', '--config.seed=3'], ['--config.train.weight_decay=0'],
      ['--config.features.speech_gate_db=40', '--config.seed=3'],
      ['--config.train.phoneme_head=0.5', '--config.train.phoneme_layer=6', '--config.seed=1'],
      ['--config.train.phoneme_head=1', '--config.train.phoneme_steps=1500']], \
      done.stderr[-2000:]
  # A misspelt row or modifier, or one given twice (two seeds too), is named.
  done = subprocess.run([sys.executable, 'experiments/ablation.py',
                         '--rows=all,all+speed@seed2,al+speed,all@seedx,all@wide@wide,'
                         'all@seed1@seed2,all@lr0,all@lr1e-3@lr2e-3,all@adv0,all@adv1@adv2,'
                         'all@drop0,all@drop1,all@drop0.1@drop0.2,all@wd-1,all@wd1@wd0,all@gate0,'
                         'all@phon0,all@phonlayer0,all@phon1@phon2,all@phonsteps0,'
                         'all@per_bin@mels40'],
                        cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert done.stderr.strip().endswith(
      'ablation.py: unknown row(s) al+speed, all@seedx, all@wide@wide, all@seed1@seed2, all@lr0, '
      'all@lr1e-3@lr2e-3, all@adv0, all@adv1@adv2, all@drop0, all@drop1, all@drop0.1@drop0.2, '
      'all@wd-1, all@wd1@wd0, all@gate0, all@phon0, all@phonlayer0, all@phon1@phon2, '
      'all@phonsteps0; '
      'rows: espeak, espeak+flite, '
      'espeak+flite+piper, all, recorded, '
      'all+speed, '
      'all+rooms, all+noise, all+warp, each with any of @wide, @mels40, @per_bin, @other, '
      '@other_heads, @other_unscored, @sortagrad, @seedN, @lrX, @advX, @dropX, @wdX, @gateX, '
      '@phonX, @phonlayerN, @phonstepsN, once.')
