"""The run report: every section the run has, every image and sound it links exists, and in
headless Chromium every image and audio element loads without a console error."""

import functools
import http.server
import json
from pathlib import Path
import re
import shutil
import subprocess
import threading

import matplotlib.figure
import numpy as np
import pytest
import soundfile as sf

from navai_jax.outputs import report


def _png(path: Path, title: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = matplotlib.figure.Figure(figsize=(3, 2))
  fig.subplots().plot([0, 1], [1, 0])
  fig.suptitle(title)
  fig.savefig(path)


@pytest.fixture
def run_folder(tmp_path):
  """A run folder holding a file of every kind the main job writes (made-up contents)."""
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  (corpus / 'corpus.json').write_text(json.dumps({'splits': {
      'train': {'utterances': 50, 'hours': 0.1, 'speakers': [1, 2, 3]},
      'test': {'utterances': 8, 'hours': 0.02, 'speakers': [7]}}}))
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text(json.dumps({'preset': 'tiny',
                                               'data': {'source': f'folder:{corpus}'}}))
  lines = [{'step': s, 'loss': 10.0 / s, 'learning_rate': 1e-3, 'grad_norm': 1.0,
            'audio_seconds_per_second': 50.0, 'elapsed_seconds': 2.0 * s} for s in (10, 20, 30)]
  lines.append({'step': 30, 'split': 'dev', 'ler': 0.4, 'wer': 0.8, 'num_utterances': 8})
  (run / 'metrics.jsonl').write_text('\n'.join(map(json.dumps, lines)) + '\n{"step": 4')
  (run / 'eval.json').write_text(json.dumps({
      'step': 30, 'split': 'test', 'ler': 0.25, 'wer': 0.5, 'num_utterances': 8,
      'per_speaker': {'7': {'ler': 0.25, 'wer': 0.5, 'num_utterances': 8}}}))
  for name in ('activation_max/figure1_a.png', 'introspect/figure2_a.png', 'navai/figure3.png',
               'navai/supplement_a_none.png', 'navai/tmaps_none.png', 'navai/phonemes.png',
               'navai/quality.png', 'layer_clusters/clustering_by_layer.png',
               'layer_clusters/dendrogram_layer1.png', 'attributions/attribution_curves.png',
               'atlas/patterns_layer8.png', 'atlas/cards/layer8_channel3.png',
               'atlas/cards/layer8_channel12.png'):
    _png(run / name, name)
  (run / 'atlas' / 'atlas.md').write_text('## Layer 8\n\n| channel | label |\n|---|---|\n'
                                          '| 3 | /s/ (60% of references) |\n')
  (run / 'atlas' / 'sound').mkdir()
  sf.write(run / 'atlas' / 'sound' / 'layer8_channel3_relevance_1.wav',
           0.1 * np.sin(np.arange(4000) / 3).astype(np.float32), 16000)
  (run / 'navai' / 'quality.md').write_text('| method | median (ms) |\n|---|---:|\n| none | 40 |\n')
  (run / 'navai' / 'concepts.md').write_text(
      '## Layer 4\n\n| class | frames |\n|---|---|\n| letter a | 206 |\n')
  (run / 'layer_clusters' / 'clustering.md').write_text('| layer | none |\n|---:|---:|\n| 1 | 0.5 |\n')
  (run / 'navai' / 'sound').mkdir()
  (run / 'eval_folder_data_asterisk_human.json').write_text(json.dumps({
      'step': 30, 'split': 'human', 'ler': 0.7, 'wer': 1.05, 'num_utterances': 552,
      'source': 'folder:data/asterisk',
      'per_length': {'1': {'ler': 0.9, 'wer': 1.4, 'num_utterances': 300},
                     '4+': {'ler': 0.6, 'wer': 1.0, 'num_utterances': 252}},
      'examples': [{'id': '9001-1-0000', 'reference': 'activated', 'hypothesis': 'abten'}]}))
  (run / 'human_explained' / 'auth-thankyou').mkdir(parents=True)
  (run / 'human_explained' / 'auth-thankyou' / 'transcript.txt').write_text('thank you\n')
  _png(run / 'human_explained' / 'auth-thankyou' / 'maps_a.png', 'maps_a')
  for name in ('letter_a', 'phoneme_i_3a'):
    sf.write(run / 'navai' / 'sound' / f'{name}.wav',
             0.1 * np.sin(np.arange(8000) / 5).astype(np.float32), 16000)
  return run


def test_report_links_every_result_of_the_run(run_folder):
  path = report.write(run_folder)
  page = Path(path).read_text()
  for title in ('Corpus', 'Training', 'Evaluation on held-out voices (test split)',
                'Figure 1', 'Figure 2', 'Figure 3', 'Supplement A', 't-maps', 'Phoneme classes',
                'Alignment quality', 'where phonemes form', 'attribution evaluation',
                'The patterns as sound', 'A human voice (Asterisk prompts, never trained on)',
                'Which channels carry each letter', 'The channel atlas'):
    assert title in page, title
  assert 'LER 0.700, WER 1.050 over 552' in page and '<td>abten</td>' in page
  assert '<td>1</td><td>0.900</td><td>1.400</td><td>300</td>' in page  # single-word prompts
  assert 'heard as: &quot;thank you&quot;' in page or 'heard as: "thank you"' in page
  linked = re.findall(r'(?:src|href)="([^"]+)"', page)
  assert len([l for l in linked if l.endswith('.png')]) >= 2 * 15  # link and image each
  # An atlas card is followed by the players of its own references.
  card = page.index('atlas/cards/layer8_channel3.png')
  assert card < page.index('layer8_channel3_relevance_1.wav') < page.index(
      'atlas/cards/layer8_channel12.png', card)
  assert any(l.endswith('human_explained/auth-thankyou/maps_a.png') for l in linked)
  assert len([l for l in linked if l.endswith('.wav')]) == 3
  for link in linked:
    assert (Path(path).parent / link).resolve().exists(), link
  assert '<td>train</td><td>50</td><td>0.1</td><td>3</td>' in page  # the corpus summary
  assert '<td>7</td><td>0.250</td><td>0.500</td><td>8</td>' in page  # a held-out voice
  assert '<td>none</td>' in page and '>0.5</td>' in page  # the markdown tables
  assert '<td>letter a</td>' in page and '<td>/s/ (60% of references)</td>' in page
  assert (Path(path).parent / 'training_curve.png').exists()


def test_report_of_a_run_that_only_trained_names_what_is_missing(run_folder):
  for made in ('eval.json', 'activation_max', 'introspect', 'navai', 'layer_clusters',
               'attributions', 'atlas'):
    path = run_folder / made
    path.unlink() if path.is_file() else shutil.rmtree(path)
  page = Path(report.write(run_folder)).read_text()
  assert 'Not in this run yet' in page
  for title, script in (('Evaluation on held-out voices', 'evaluate.py'),
                        ('Figure 1: activation maximization', 'activation_max.py'),
                        ('Figure 3: NAvAI', 'navai.py'), ('where phonemes form', 'layer_clusters.py'),
                        ('The attribution evaluation', 'evaluate_attributions.py'),
                        ('The channel atlas', 'atlas.py')):
    assert re.search(f'<td>[^<]*{title}[^<]*</td><td>experiments/{script} --workdir=', page), title
  assert 'tensorboard --logdir' not in page  # this run wrote no TensorBoard folder
  (run_folder / 'tensorboard').mkdir()
  assert 'tensorboard --logdir' in Path(report.write(run_folder)).read_text()


def test_report_of_a_folder_without_a_run_says_so(tmp_path):
  with pytest.raises(ValueError, match='has no config.json: not a training run folder'):
    report.write(tmp_path)


HARNESS = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="page" src="report/index.html" width="1300" height="900"></iframe>
<script>
window.addEventListener('load', () => setTimeout(() => {
  const d = document.getElementById('page').contentDocument;
  const images = [...d.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);
  const audio = [...d.querySelectorAll('audio')].map(
      a => [a.getAttribute('src'), a.readyState >= 1 && !a.error]);
  document.getElementById('result').textContent = JSON.stringify({images, audio});
}, 2000));
</script></body></html>"""


def test_report_loads_in_headless_chromium(run_folder):
  browser = shutil.which('chromium') or shutil.which('chromium-browser')
  if browser is None:
    pytest.skip('Chromium is not installed (./test.sh installs Debian\'s chromium where it '
                'runs as root with apt-get); the browser check of the report is skipped.')
  report.write(run_folder)
  (run_folder / 'harness.html').write_text(HARNESS)
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(run_folder))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  url = f'http://127.0.0.1:{server.server_address[1]}'
  flags = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--mute-audio',
           '--enable-logging=stderr', '--v=0']
  try:
    done = subprocess.run(flags + ['--virtual-time-budget=10000', '--dump-dom',
                                   f'{url}/harness.html'], capture_output=True, text=True,
                          timeout=120)
    shot = run_folder / 'report' / 'screenshot.png'
    subprocess.run(flags + ['--window-size=1300,2400', f'--screenshot={shot}',
                            f'{url}/report/index.html'], capture_output=True, timeout=120)
  finally:
    server.shutdown()
  found = re.search(r'<pre id="result">([^<]*)</pre>', done.stdout)
  assert found, done.stderr[-2000:]
  loaded = json.loads(found.group(1))
  assert len(loaded['images']) == 15 and len(loaded['audio']) == 3
  assert all(ok for _, ok in loaded['images'] + loaded['audio']), loaded
  errors = [l for l in done.stderr.splitlines() if ':CONSOLE' in l and '/report/' in l]
  assert not errors, errors
  assert shot.exists() and shot.stat().st_size > 10_000
