"""The main job: from nothing to a trained recognizer and what it listens for.

  ./run.sh                      # = python experiments/main.py, inside .venv

Stages, each one an experiment script run in its own process (so each can also be run, and
rerun, alone):

1. `make_corpus.py`     synthesize the offline corpus (LibriSpeech layout + word/phoneme times)
                        with eSpeak NG, flite, Piper, MBROLA and RHVoice; Pico's voices held
                        out for testing
2. `train.py`           train the `small` Wav2Letter: a fixed schedule of --train_steps steps
                        (the same model on any machine of one processor model)
3. `evaluate.py`        letter and word error rate on the held-out voices (test split), and
                        where Debian's Asterisk prompts are installed, on a human voice
                        (`make_human_set.py`; never trained on)
4. `introspect.py`      Figure 2: sensitivity and LRP of two frames predicted as 'a'
5. `activation_max.py`  Figure 1: optimal inputs of neurons of layers 1, 2, 11 and 12
6. `navai.py`           Figure 3, Supplement A, t-maps, phoneme classes, sounds, and the
                        alignment-quality table in milliseconds (the training split, as in
                        the paper; --navai_split=dev for the held-out voices); the same pass
                        profiles the outputs of all twelve layers
7. `layer_clusters.py`  where phonemes form: the layer profiles clustered against phonetic
                        categories, layer by layer (NMI, ARI, chance level)
8. `atlas.py`           the channel atlas of layer 8: the channels that carry each letter,
                        their labels from the true phonemes, reference frames, sounds
9. `evaluate_attributions.py`  are the maps faithful? Every attribution method scored by
                        deletion/insertion, randomisation, robustness, localisation and
                        sparseness on frames of the held-out dev voices
10. `report.py`         one page with all of it: runs/small/report/index.html

Every stage resumes: rerunning the command after an interruption keeps the corpus, the
checkpoints and a partial NAvAI pass, and goes on where it stopped. The stages keep what XLA
compiled in WORKDIR/xla_cache (`core.xla_cache`), so a rerun loads their programs instead of
compiling them again (the same numbers to the bit). docs/results.md gives how
long it takes and what it reaches with the defaults (4 hours of speech, 4,500 steps of `small`).
"""

import json
import os
from pathlib import Path
import subprocess
import sys
import time

from absl import app
from absl import flags

from navai_jax.configs import default
from navai_jax.core import xla_cache
from navai_jax.speech import asterisk
from navai_jax.speech import sentences
from navai_jax.speech import voices
from navai_jax.training import schedule

_CORPUS_DIR = flags.DEFINE_string('corpus_dir', 'data/corpus', 'Corpus folder.')
_HOURS = flags.DEFINE_float('hours', 4.0, 'Hours of synthesized training speech (an equal share '
                            'per trained engine).')
_ENGINES = flags.DEFINE_list('engines', list(voices.DEFAULT_ENGINES),
                             'Speech engines of the corpus (navai_jax/speech/voices.py).')
_HELD_OUT_ENGINES = flags.DEFINE_list('held_out_engines', ['pico'],
                                      'Engines heard only in dev and test.')
_SHORT_FRACTION = flags.DEFINE_float(
    'short_fraction', 0.0, 'Share of the corpus\'s utterances that say only 1-3 words '
    '(make_corpus.py); with another value than a finished run\'s, give a new --corpus_dir and '
    '--workdir, since every stage resumes what its folder holds.')
_TEXT_SOURCES = flags.DEFINE_list(
    'text_sources', list(sentences.DEFAULT_TEXT_SOURCES), 'Where the corpus\'s sentences come '
    f'from, of {", ".join(sentences.TEXT_SOURCES)} (make_corpus.py); with other sources than a '
    'finished run\'s, give a new --corpus_dir and --workdir.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/small', 'Training run folder.')
_PRESET = flags.DEFINE_enum('preset', 'small', ['tiny', 'small', 'paper'], 'Model config preset.')
_TRAIN_STEPS = flags.DEFINE_integer(
    'train_steps', 4500, 'Training steps (`small`: ~11 minutes on the 2-core reference '
    'machine). Fixed, so the same seed gives the same model on any machine of the same '
    'processor model, however fast or busy (0: the preset\'s num_steps).')
_TRAIN_MINUTES = flags.DEFINE_float(
    'train_minutes', 0.0, 'Instead of --train_steps, a schedule sized to this many minutes of '
    'training on this machine, from the step time of its first 100 steps: a quicker, weaker '
    'model whose steps depend on the machine (0: off).')
_NAVAI_SPLIT = flags.DEFINE_string('navai_split', 'train', 'Split that NAvAI averages over '
                                   '(the paper: the training split; --navai_split=dev for the '
                                   'held-out voices).')
_NAVAI_UTTERANCES = flags.DEFINE_integer(
    'navai_utterances', 1000, 'NAvAI over this many evenly spaced utterances of the split, so '
    'every voice is in it (0 = all of it: the 6-hour training split is ~274,000 frames, '
    '~13 minutes on 2 CPU cores; 1000 utterances are ~46,000).')
_ATTRIBUTION_FRAMES = flags.DEFINE_integer(
    'attribution_frames', 12, 'Letter frames of the dev split (from 8 utterances) on which '
    'every attribution method is scored; to fit the time budget the curves remove bins only '
    '(not time columns or patches), max-sensitivity takes 4 noise draws per frame instead of '
    '200 and the utterance-level deletion 4 utterances (experiments/evaluate_attributions.py '
    'runs the full settings).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of corpus and training.')
_HUMAN_DIR = flags.DEFINE_string(
    'human_dir', 'data/asterisk', 'Where the human-voice split (Asterisk prompts, for '
    'evaluation only) is written, where Debian\'s asterisk-core-sounds-en(-g722) are installed.')

flags.register_validator('hours', lambda h: 0 < h <= 1000, '--hours must be in (0, 1000].')
flags.register_validator('short_fraction', lambda f: 0 <= f <= 1,
                         '--short_fraction must be in [0, 1].')
flags.register_validator('train_steps', lambda n: n >= 0, '--train_steps must be >= 0.')
flags.register_validator('train_minutes', lambda m: m >= 0, '--train_minutes must be >= 0.')
flags.register_validator('navai_utterances', lambda n: n >= 0, '--navai_utterances must be >= 0.')
flags.register_validator('attribution_frames', lambda n: n >= 1,
                         '--attribution_frames must be >= 1.')

EXPERIMENTS = Path(__file__).resolve().parent
HUMAN_EXPLAINED = 'human_explained'  # explain_audio on the human prompts, in the run folder


def run_stage(number: int, title: str, script: str, *args: str) -> float:
  """Runs one experiment script; stops the job with its exit status if it fails."""
  print(f'\n=== {number}. {title}: {script} {" ".join(args)}', flush=True)
  start = time.time()
  done = subprocess.run([sys.executable, str(EXPERIMENTS / script), *args],
                        env=xla_cache.environment(_WORKDIR.value))
  if done.returncode:
    sys.exit(f'main.py: stage {number} ({script}) failed with exit status {done.returncode}; '
             'rerun the same command to resume from where it stopped.')
  return time.time() - start


def sized_schedule(workdir: str, train_args: list[str]) -> tuple[int, float]:
  """The steps that fit --train_minutes on this machine (`schedule.sized`), and the seconds
  spent finding them: the first MEASURE_TO steps of the run, trained here, whose learning rate
  does not depend on the schedule's length (so the run is the one the final schedule makes)."""
  kept = schedule.read(workdir)
  if kept is not None:
    print(f'\n=== Training schedule: {kept["num_steps"]} steps (chosen before, {workdir})')
    return kept['num_steps'], 0.0
  train = default.get_config(_PRESET.value).train
  if train.warmup_steps < schedule.MEASURE_TO or train.num_steps <= schedule.MEASURE_TO:
    return train.num_steps, 0.0  # A preset too short to measure in (tiny): as it is.
  spent = run_stage(2, f'Training, first {schedule.MEASURE_TO} steps (measuring the step time)',
                    'train.py', *train_args, f'--config.train.num_steps={schedule.MEASURE_TO}',
                    '--config.train.eval_every=0',
                    f'--config.train.log_every={schedule.MEASURE_EVERY}')
  try:
    timing = schedule.step_time((Path(workdir) / 'metrics.jsonl').read_text().splitlines())
  except ValueError as e:
    sys.exit(f'main.py: {workdir}/{e}')
  chosen = schedule.sized(*timing, _TRAIN_MINUTES.value, train.num_steps)
  schedule.write(workdir, chosen)
  print(f'\n=== Training schedule: {chosen["seconds_per_step"] * 1e3:.0f} ms per step here, so '
        f'{chosen["num_steps"]} of the preset\'s {train.num_steps} steps fit '
        f'{_TRAIN_MINUTES.value:.1f} minutes (a shorter schedule, run to its end; its model '
        'depends on this machine\'s speed).')
  return chosen['num_steps'], spent


def fixed_schedule(workdir: str) -> int:
  """--train_steps (or the preset's), refusing a workdir trained to another schedule."""
  steps = _TRAIN_STEPS.value or default.get_config(_PRESET.value).train.num_steps
  try:
    schedule.fixed(workdir, steps)
  except ValueError as e:
    sys.exit(f'main.py: {e}')
  if _PRESET.value == 'small':
    train = steps * schedule.REFERENCE_STEP_SECONDS / 60
    print(f'\n=== Training schedule: {steps} steps, fixed. On the 2-core reference machine '
          f'that is ~{train:.0f} minutes of training and '
          f'~{train + schedule.REFERENCE_REST_MINUTES:.0f} for the stages from here on; a '
          'slower or busier machine of the same processor takes longer for the same model.')
  return steps


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  workdir, corpus = _WORKDIR.value, _CORPUS_DIR.value
  config = f'--config={EXPERIMENTS.parent}/navai_jax/configs/default.py:{_PRESET.value}'
  seconds = {}
  seconds['corpus'] = run_stage(1, 'Offline speech corpus', 'make_corpus.py',
                                f'--out_dir={corpus}', f'--hours={_HOURS.value}',
                                f'--seed={_SEED.value}',
                                f'--engines={",".join(_ENGINES.value)}',
                                f'--held_out_engines={",".join(_HELD_OUT_ENGINES.value)}',
                                f'--short_fraction={_SHORT_FRACTION.value}',
                                f'--text_sources={",".join(_TEXT_SOURCES.value)}')
  # The FLAC files are read as they are (`data.reader=direct`): the same utterances as through
  # TFDS, without the minutes of preparing the corpus into ArrayRecord files first.
  train_args = [config, f'--workdir={workdir}', f'--config.data.source=folder:{corpus}',
                '--config.data.reader=direct', f'--config.seed={_SEED.value}']
  if _TRAIN_MINUTES.value:
    steps, seconds['train'] = sized_schedule(workdir, train_args)
  else:
    steps, seconds['train'] = fixed_schedule(workdir), 0.0
  seconds['train'] += run_stage(2, f'Training ({steps} steps)', 'train.py', *train_args,
                                f'--config.train.num_steps={steps}')
  seconds['evaluate'] = run_stage(3, 'Evaluation on held-out voices', 'evaluate.py',
                                  f'--workdir={workdir}', '--split=test')
  if Path(asterisk.SOUNDS_DIR).is_dir() and Path(asterisk.TRANSCRIPTS).is_file():
    seconds['human'] = run_stage(3, 'A human voice (Asterisk prompts, never trained on)',
                                 'make_human_set.py', f'--out_dir={_HUMAN_DIR.value}')
    seconds['human'] += run_stage(3, 'Evaluation on the human voice', 'evaluate.py',
                                  f'--workdir={workdir}', f'--split={asterisk.SPLIT}',
                                  f'--data_source=folder:{_HUMAN_DIR.value}')
    seconds['human'] += run_stage(
        3, f'The human voice explained ({asterisk.NUM_EXAMPLES} prompts)', 'explain_audio.py',
        f'--workdir={workdir}', f'--audio={os.path.join(_HUMAN_DIR.value, asterisk.EXAMPLES)}',
        f'--out_dir={os.path.join(workdir, HUMAN_EXPLAINED)}', '--letters=a,e,t',
        '--frames_per_letter=2')
  else:
    print(f'\n=== No human voice: {asterisk.SOUNDS_DIR} or {asterisk.TRANSCRIPTS} is missing '
          f'(Debian packages {", ".join(asterisk.DEBIAN_PACKAGES)}; ./run.sh installs them where '
          'it runs as root).')
  seconds['introspect'] = run_stage(4, 'Figure 2 (sensitivity, LRP)', 'introspect.py',
                                    f'--workdir={workdir}', '--split=dev', '--letter=a')
  seconds['activation_max'] = run_stage(5, 'Figure 1 (activation maximization)',
                                        'activation_max.py', f'--workdir={workdir}',
                                        '--split=dev', '--letter=a')
  seconds['navai'] = run_stage(6, 'NAvAI (Figure 3, Supplement A, alignment quality)',
                               'navai.py', f'--workdir={workdir}',
                               f'--config.navai.split={_NAVAI_SPLIT.value}',
                               f'--config.navai.max_utterances={_NAVAI_UTTERANCES.value}')
  seconds['layer_clusters'] = run_stage(
      7, 'Layer profiles (where phonemes form)', 'layer_clusters.py', f'--workdir={workdir}',
      f'--config.navai.split={_NAVAI_SPLIT.value}',
      f'--config.navai.max_utterances={_NAVAI_UTTERANCES.value}',
      '--config.layer_clusters.permutations=200')
  seconds['atlas'] = run_stage(
      8, 'The channel atlas (which channels carry each letter, what each one hears)',
      'atlas.py', f'--workdir={workdir}', f'--config.navai.split={_NAVAI_SPLIT.value}',
      f'--config.navai.max_utterances={_NAVAI_UTTERANCES.value}',
      '--config.atlas.max_utterances=200')
  seconds['attributions'] = run_stage(
      9, 'Attribution evaluation (faithfulness, randomisation, localisation)',
      'evaluate_attributions.py', f'--workdir={workdir}',
      f'--config.attributions.max_frames={_ATTRIBUTION_FRAMES.value}',
      '--config.attributions.max_utterances=8', "--config.attributions.granularities=('bin',)",
      '--config.attributions.max_sensitivity_samples=4',
      '--config.attributions.utterance_count=4')
  seconds['report'] = run_stage(10, 'Report (one page for the whole run)', 'report.py',
                                f'--workdir={workdir}', f'--corpus_dir={corpus}')
  result = json.loads((Path(workdir) / 'eval.json').read_text())
  print('\n=== Done in {:.1f} minutes ({})'.format(
      sum(seconds.values()) / 60, ', '.join(f'{k} {v / 60:.1f}' for k, v in seconds.items())))
  print(f"Test split (held-out voices): LER {result['ler']:.3f}, WER {result['wer']:.3f} "
        f"over {result['num_utterances']} utterances, checkpoint step {result['step']}.")
  where = {
      'the report: everything below on one page': os.path.join(workdir, 'report',
                                                             'index.html'),
      'corpus (FLAC, transcripts, word/phoneme timings)': corpus,
      'run (config.json, checkpoints/, metrics.jsonl, eval.json)': workdir,
      'the human voice (LER, WER, decoded examples)': os.path.join(
          workdir, 'eval_folder_*_human.json'),
      'Figure 2': os.path.join(workdir, 'introspect', 'figure2_a.png'),
      'Figure 1': os.path.join(workdir, 'activation_max', 'figure1_a.png'),
      'Figure 3': os.path.join(workdir, 'navai', 'figure3.png'),
      'Supplement A, t-maps, phonemes': os.path.join(workdir, 'navai', 'supplement_a_*.png'),
      'alignment quality (ms)': os.path.join(workdir, 'navai', 'quality.md'),
      'sounds of the patterns': os.path.join(workdir, 'navai', 'sound', '*.wav'),
      'layer profiles, where phonemes form': os.path.join(workdir, 'layer_clusters',
                                                          'clustering.md'),
      'channels of each letter, their labels and reference frames': os.path.join(
          workdir, 'atlas', 'atlas.md'),
      'attribution evaluation (table, curves)': os.path.join(workdir, 'attributions',
                                                             'attributions.md'),
  }
  for what, path in where.items():
    print(f'  {what}: {path}')


if __name__ == '__main__':
  app.run(main)
