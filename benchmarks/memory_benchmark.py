"""Peak memory of training and of the NAvAI pass on a 1-hour and a 4-hour corpus.

  python benchmarks/memory_benchmark.py --hours=1,4 --train_steps=40 --navai_utterances=64

Data are read from disk as batches are made, so peak memory should not grow with the corpus:
the two corpora's peaks should differ by at most 10%.

The corpora: one synthesized base corpus of `--base_hours` (`experiments/make_corpus.py`),
then, for each of `--hours`, its training split repeated under new speaker ids until it holds
that many hours (the FLAC files hard-linked, the transcripts rewritten), with the base's dev
split. Each measurement runs in a fresh subprocess, whose peak resident memory (`ru_maxrss`)
is its own, after a subprocess that prepared the corpus (TFDS ArrayRecord files, the default
reader):

* training: `train.train` of `--preset` for `--train_steps` steps over the whole training
  split (batches planned over every utterance, evaluation off);
* NAvAI: `dataset_pass.run_pass` over `--navai_utterances` utterances spread over the whole training
  split (the same number for both corpora), random weights biased towards letters.
"""

import json
import os
from pathlib import Path
import resource
import shutil
import subprocess
import sys

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]

_HOURS = flags.DEFINE_list('hours', ['1', '4'], 'Corpus sizes (hours of training speech).')
_BASE_HOURS = flags.DEFINE_float('base_hours', 0.25, 'Hours of the synthesized base corpus.')
_WORK_DIR = flags.DEFINE_string('work_dir', '/tmp/navai_memory_benchmark',
                                'Where the corpora and runs go (kept for reruns).')
_PRESET = flags.DEFINE_string('preset', 'small', 'Model preset.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 40, 'Training steps per measurement.')
_NAVAI_UTTERANCES = flags.DEFINE_integer('navai_utterances', 64, 'Utterances of the pass.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: "prepare|train|navai:CORPUS".')


def _config(corpus: str):
  from navai_jax.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config(_PRESET.value)
  config.data.source = f'folder:{corpus}'
  config.train.num_steps = _TRAIN_STEPS.value
  config.train.eval_every = 0
  config.train.checkpoint_every = 10**6
  config.train.log_every = 10
  return config


def child(kind: str, corpus: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from navai_jax.introspection import dataset_pass  # pylint: disable=g-import-not-at-top
  from navai_jax.speech import data  # pylint: disable=g-import-not-at-top
  from navai_jax.training import train  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  import common  # pylint: disable=g-import-not-at-top
  config = _config(corpus)
  out = {'kind': kind, 'corpus': corpus}
  if kind == 'prepare':
    split = data.load_split(config, 'train')
    out.update(utterances=len(split), hours=split.hours)
  elif kind == 'train':
    workdir = Path(corpus).parent / f'run_{Path(corpus).name}'
    shutil.rmtree(workdir, ignore_errors=True)
    train.train(config, str(workdir))
    out['steps'] = config.train.num_steps
  else:
    variables = common.letter_variables(config)
    result = dataset_pass.run_pass(config, variables, data.batches(
        config, 'train', train=False, batch_multiple=jax.local_device_count(),
        max_utterances=_NAVAI_UTTERANCES.value), save_every=10**9)
    out.update(frames=result.frames, utterances=result.utterances)
  out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def in_subprocess(kind: str, corpus: Path) -> dict:
  flags_ = [f'--{name}={flags.FLAGS[name].serialize().split("=", 1)[1]}'
            for name in ('preset', 'train_steps', 'navai_utterances')]
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  done = subprocess.run([sys.executable, __file__, f'--child={kind}:{corpus}'] + flags_,
                        capture_output=True, text=True, env=env, check=False)
  if done.returncode:
    raise RuntimeError(f'{kind} on {corpus} failed:\n{done.stderr[-3000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def repeated_corpus(base: Path, out: Path, hours: float, base_hours: float) -> Path:
  """`base` with its training split repeated under new speaker ids up to `hours`."""
  copies = max(1, round(hours / base_hours))
  if (out / 'copies.txt').is_file() and (out / 'copies.txt').read_text() == str(copies):
    return out
  shutil.rmtree(out, ignore_errors=True)
  shutil.copytree(base / 'dev', out / 'dev', copy_function=os.link)
  for k in range(copies):
    for trans in sorted((base / 'train').rglob('*.trans.txt')):
      speaker, chapter = (int(x) for x in trans.name.split('.')[0].split('-'))
      new_speaker, new_chapter = speaker + 10000 * k, chapter + 10000000 * k
      folder = out / 'train' / str(new_speaker) / str(new_chapter)
      folder.mkdir(parents=True, exist_ok=True)
      lines = []
      for line in trans.read_text().splitlines():
        utt_id, text = line.split(' ', 1)
        new_id = f'{new_speaker}-{new_chapter}-{utt_id.split("-")[2]}'
        os.link(trans.parent / f'{utt_id}.flac', folder / f'{new_id}.flac')
        lines.append(f'{new_id} {text}')
      (folder / f'{new_speaker}-{new_chapter}.trans.txt').write_text('\n'.join(lines) + '\n')
  (out / 'copies.txt').write_text(str(copies))
  return out


def main(argv):
  del argv
  if _CHILD.value:
    kind, corpus = _CHILD.value.split(':', 1)
    print(json.dumps(child(kind, corpus)))
    return
  print('command:', ' '.join(sys.argv))
  print(f'machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}')
  work = Path(_WORK_DIR.value)
  base = work / 'base'
  subprocess.run([sys.executable, str(ROOT / 'experiments' / 'make_corpus.py'),
                  f'--out_dir={base}', f'--hours={_BASE_HOURS.value}'], check=True,
                 capture_output=True, env={**os.environ, 'PYTHONPATH': str(ROOT)})
  results = {}
  for hours in (float(h) for h in _HOURS.value):
    corpus = repeated_corpus(base, work / f'corpus_{hours:g}h', hours, _BASE_HOURS.value)
    prepared = in_subprocess('prepare', corpus)
    results[hours] = {kind: in_subprocess(kind, corpus) for kind in ('train', 'navai')}
    print(f'{hours:g} h corpus: {prepared["utterances"]} training utterances, '
          f'{prepared["hours"]:.2f} h; peak RSS training {_TRAIN_STEPS.value} steps '
          f'{results[hours]["train"]["peak_rss_mb"]:.0f} MB, NAvAI over '
          f'{results[hours]["navai"]["utterances"]} utterances '
          f'({results[hours]["navai"]["frames"]} frames) '
          f'{results[hours]["navai"]["peak_rss_mb"]:.0f} MB')
  small, large = (results[float(h)] for h in (_HOURS.value[0], _HOURS.value[-1]))
  for kind in ('train', 'navai'):
    change = large[kind]['peak_rss_mb'] / small[kind]['peak_rss_mb'] - 1
    print(f'{kind}: {_HOURS.value[-1]} h vs {_HOURS.value[0]} h peak RSS {change:+.1%} '
          f'(goal: within 10%)')
  print(f'load average after the run {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  app.run(main)
