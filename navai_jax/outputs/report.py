"""One page for a whole run: WORKDIR/report/index.html.

Gathers what the stages wrote into a run folder: the corpus summary (`corpus.json` of a
`folder:` data source), the training curve (`figures.training_curve` of `metrics.jsonl`), LER and WER per
held-out voice (`eval.json`), Figures 1-3, Supplement A, t-maps and phoneme figures, the
alignment-quality table and plot, the layer profiles' clustering, the channel atlas, the
attribution evaluation,
and a player for every sonified pattern. Images and sounds stay where the stages wrote them;
the page links them by paths relative to itself, so the run folder moves as a whole. A section
appears for every result that exists, so the report of a partial run works too; tables written
as markdown by the stages are converted with `markdown` (its `tables` extension).
"""

import glob
import html
import json
import os
import re
from pathlib import Path
from typing import Optional

import markdown

from navai_jax.core import files
from navai_jax.outputs import figures

REPORT_DIR = 'report'
ATLAS_CARDS = 'atlas/cards/*.png'  # atlas/cards/layerL_channelC.png, its sounds atlas/sound/


def _read_json(path: Path) -> Optional[dict]:
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return None


def _metrics(workdir: Path) -> list[dict]:
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return []
  lines = []
  for line in path.read_text().splitlines():
    try:
      lines.append(json.loads(line))
    except json.JSONDecodeError:
      continue  # a line cut short by a killed run
  return lines


class _Page:
  """The HTML body, section by section; every linked file is relative to the report."""

  def __init__(self, workdir: Path, out_dir: Path):
    self.workdir, self.out_dir, self.parts = workdir, out_dir, []

  def link(self, path: Path) -> str:
    return html.escape(os.path.relpath(path, self.out_dir).replace(os.sep, '/'))

  def heading(self, text: str) -> None:
    self.parts.append(f'<h2>{html.escape(text)}</h2>')

  def text(self, text: str) -> None:
    self.parts.append(f'<p>{html.escape(text)}</p>')

  def table(self, header: list[str], rows: list[list]) -> None:
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in r) + '</tr>'
                   for r in rows)
    self.parts.append(f'<table><tr>{head}</tr>{body}</table>')

  def markdown(self, path: Path) -> None:
    if path.exists():
      self.parts.append(markdown.markdown(path.read_text(), extensions=['tables']))

  def images(self, pattern: str) -> int:
    found = sorted(glob.glob(str(self.workdir / pattern)))
    for path in found:
      name = html.escape(Path(path).name)
      self.parts.append(f'<figure><a href="{self.link(Path(path))}"><img src="{self.link(Path(path))}" '
                        f'alt="{name}"></a><figcaption>{name}</figcaption></figure>')
    return len(found)

  def sounds(self, pattern: str) -> int:
    found = sorted(glob.glob(str(self.workdir / pattern)))
    if found:
      self.parts.append('<div class="sounds">' + ''.join(
          f'<div><span>{html.escape(Path(p).stem)}</span>'
          f'<audio controls preload="metadata" src="{self.link(Path(p))}"></audio></div>'
          for p in found) + '</div>')
    return len(found)


STYLE = """
body { font-family: sans-serif; max-width: 1300px; margin: 1em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
img { max-width: 620px; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; }
.sounds { display: flex; flex-wrap: wrap; }
.sounds div { margin: 0.3em 1em 0.3em 0; }
.sounds span { display: inline-block; min-width: 7em; font-family: monospace; }
"""


def write(workdir: str | os.PathLike, corpus_dir: Optional[str] = None) -> str:
  """Writes WORKDIR/report/index.html (and the training curve beside it); returns its path.

  Args:
    workdir: the run folder.
    corpus_dir: the corpus folder whose `corpus.json` is summarized; default the run's
      `folder:` data source (relative paths as the run saw them, from the current directory).
  """
  workdir = Path(workdir)
  if not (workdir / 'config.json').exists():
    raise ValueError(f'{workdir} has no config.json: not a training run folder.')
  config = json.loads((workdir / 'config.json').read_text())
  out_dir = workdir / REPORT_DIR
  files.check_writable(str(out_dir))
  os.makedirs(out_dir, exist_ok=True)
  page = _Page(workdir, out_dir)
  source = config.get('data', {}).get('source', '')
  page.parts.append(f'<h1>{html.escape(workdir.name)}: Wav2Letter ({html.escape(config.get("preset", "?"))}) '
                    f'and what it listens for</h1>')
  page.text(f'Run folder {workdir.resolve()}; data source {source}.')

  page.heading('Corpus')
  if corpus_dir is None and source.startswith('folder:'):
    corpus_dir = source[len('folder:'):]
  corpus = _read_json(Path(corpus_dir) / 'corpus.json') if corpus_dir else None
  if corpus and 'splits' in corpus:
    page.table(['split', 'utterances', 'hours', 'voices'],
               [[name, s.get('utterances', ''), s.get('hours', ''), len(s.get('speakers', []))]
                for name, s in corpus['splits'].items()])
    if corpus.get('engines'):
      page.table(['engine', 'version', 'licence', 'held out of training'],
                 [[name, e.get('version', ''), e.get('licence', ''),
                   'yes' if e.get('held_out') else 'no']
                  for name, e in corpus['engines'].items()])
  else:
    page.text(f'No corpus.json in {corpus_dir or source} (a corpus not made by make_corpus.py).')

  page.heading('Training')
  lines = _metrics(workdir)
  schedule = _read_json(workdir / 'schedule.json')
  if schedule and 'seconds_per_step' in schedule:
    page.text(f'Schedule sized to the machine: {schedule["num_steps"]} steps at '
              f'{1000 * schedule["seconds_per_step"]:.0f} ms per step measured in the warmup '
              f'(budget {schedule["train_minutes"]:g} minutes).')
  elif schedule:
    page.text(f'Fixed schedule: {schedule["num_steps"]} steps.')
  if lines:
    figures.training_curve(lines, str(out_dir / 'training_curve.png'))
    page.images(f'{REPORT_DIR}/training_curve.png')
    last = [l for l in lines if 'loss' in l][-1:]
    if last:
      board = (f' TensorBoard: tensorboard --logdir {workdir / "tensorboard"}'
               if (workdir / 'tensorboard').is_dir() else '')
      page.text(f'Last logged step {last[0]["step"]}: loss {last[0]["loss"]:.3f}, '
                f'{last[0]["elapsed_seconds"] / 60:.1f} minutes of training.{board}')
  else:
    page.text('No metrics.jsonl yet.')

  result = _read_json(workdir / 'eval.json')
  missing = []
  if not result:
    missing.append(('Evaluation on held-out voices', 'experiments/evaluate.py'))
  if result:
    page.heading(f'Evaluation on held-out voices ({result["split"]} split)')
    page.text(f'LER {result["ler"]:.3f}, WER {result["wer"]:.3f} over {result["num_utterances"]} '
              f'utterances, checkpoint step {result["step"]}.')
    page.table(['voice', 'LER', 'WER', 'utterances'],
               [[voice, f'{r["ler"]:.3f}', f'{r["wer"]:.3f}', r['num_utterances']]
                for voice, r in sorted(result.get('per_speaker', {}).items())])
    if result.get('per_engine'):
      page.table(['engine', 'LER', 'WER', 'utterances'],
                 [[engine, f'{r["ler"]:.3f}', f'{r["wer"]:.3f}', r['num_utterances']]
                  for engine, r in result['per_engine'].items()])
  human = sorted(workdir.glob('eval_*_human.json'))
  if human:
    result = _read_json(human[-1])
    page.heading('A human voice (Asterisk prompts, never trained on)')
    page.text(f'LER {result["ler"]:.3f}, WER {result["wer"]:.3f} over {result["num_utterances"]} '
              f'prompts of one professional US-English speaker ({result.get("source", "")}), '
              f'checkpoint step {result["step"]}.')
    if result.get('per_length'):
      page.table(['words per prompt', 'LER', 'WER', 'prompts'],
                 [[group, f'{r["ler"]:.3f}', f'{r["wer"]:.3f}', r['num_utterances']]
                  for group, r in result['per_length'].items()])
    page.table(['reference', 'decoded'],
               [[html.escape(e.get('reference', '')), html.escape(e.get('hypothesis', ''))]
                for e in result.get('examples', [])[:5]])
  for explained in sorted((workdir / 'human_explained').glob('*/transcript.txt')):
    page.text(f'{explained.parent.name}, heard as: "{explained.read_text().strip()}"')
    page.images(str(explained.parent.relative_to(workdir) / 'maps_*.png'))

  # (title, figures, table, the script that makes them)
  sections = [
      ('Figure 1: activation maximization', ['activation_max/figure1_*.png'], None,
       'experiments/activation_max.py'),
      ('Figure 2: sensitivity and LRP of single frames', ['introspect/figure2_*.png'], None,
       'experiments/introspect.py'),
      ('Figure 3: NAvAI', ['navai/figure3.png'], None, 'experiments/navai.py'),
      ('Supplement A: normalized patterns of every letter', ['navai/supplement_a_*.png'], None,
       'experiments/navai.py'),
      ('t-maps (Welch t of each letter against all frames, for display)',
       ['navai/tmaps_*.png'], None, 'experiments/navai.py'),
      ('Phoneme classes', ['navai/phonemes.png', 'navai/supplement_phonemes_*.png'], None,
       'experiments/navai.py on a corpus with phoneme times'),
      ('Alignment quality (distance to the true span, ms)', ['navai/quality.png'],
       'navai/quality.md', 'experiments/navai.py on a corpus with phoneme times'),
      ('Which channels carry each letter (concept importance, channel labels)', [],
       'navai/concepts.md', 'experiments/navai.py'),
      ('The channel atlas: what each channel of a letter hears',
       ['atlas/patterns_layer*.png', ATLAS_CARDS], 'atlas/atlas.md',
       'experiments/atlas.py'),
      ('What every layer listens for: where phonemes form',
       ['layer_clusters/clustering_by_layer.png', 'layer_clusters/dendrogram_layer*.png',
        'layer_clusters/profiles_layer*.png', 'layer_clusters/channels_*.png'], 'layer_clusters/clustering.md',
       'experiments/layer_clusters.py'),
      ('Are the maps faithful? The attribution evaluation',
       ['attributions/attribution_*.png'], 'attributions/attributions.md',
       'experiments/evaluate_attributions.py'),
  ]
  for title, patterns, table, script in sections:
    if not any(glob.glob(str(workdir / p)) for p in patterns) and not (
        table and (workdir / table).exists()):
      missing.append((title, script))
      continue
    page.heading(title)
    if table:
      page.markdown(workdir / table)
    for pattern in patterns:
      if pattern == ATLAS_CARDS:  # each channel's card with the sounds of its references
        numbers = lambda path: [int(n) for n in re.findall(r'\d+', Path(path).stem)]
        for card in sorted(glob.glob(str(workdir / pattern)), key=numbers):
          page.images(os.path.relpath(card, workdir))
          page.sounds(f'atlas/sound/{Path(card).stem}_*.wav')
      else:
        page.images(pattern)
  if glob.glob(str(workdir / 'navai/sound/*.wav')):
    page.heading('The patterns as sound (Griffin-Lim of the aligned mean frames)')
    page.sounds('navai/sound/*.wav')
  if missing:
    page.heading('Not in this run yet')
    page.table(['section', 'made by'], [[title, f'{script} --workdir={workdir}']
                                        for title, script in missing])
  document = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
              f'<title>{html.escape(workdir.name)} report</title><style>{STYLE}</style></head>'
              '<body>\n' + '\n'.join(page.parts) + '\n</body></html>\n')
  path = str(out_dir / 'index.html')
  files.write_text(path, document)
  return path
