"""The experiments end to end on a fabricated corpus: the files each workflow writes hold what
the library computes, a rerun of NAvAI resumes, and the NAvAI script takes config overrides and
refuses ones that would change the trained run."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL.Image
import pytest

from navai_jax.introspection import activation_max
from navai_jax.introspection import attribution
from navai_jax.training import checkpoints
from navai_jax.speech import data
from navai_jax.core import files
from navai_jax.introspection import layer_profiles
from navai_jax.recognizer import model
from navai_jax.introspection import lrp
from navai_jax.recognizer import network
from navai_jax.training import parallel
from navai_jax.introspection import phoneme_clusters
from navai_jax.training import train
from navai_jax.recognizer import vocab
from navai_jax.stages import workflows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory, tiny_variables, write_split):
  """The letter-biased `tiny` model on a dev split of noise with true letter times."""
  root = tmp_path_factory.mktemp('workflows')
  rng = np.random.default_rng(0)
  texts = ['cat sat', 'a dog', 'bee', 'hello you']
  write_split(root / 'corpus', 'dev', texts, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  config, variables = tiny_variables(0, jnp.float32, letter_bias=True)
  config.data.source = f'folder:{root / "corpus"}'
  config.data.reader = 'direct'
  config.am.steps = 5
  config.navai.frame_batch = 8
  config.navai.sonify_iterations = 3
  config.navai.save_every = 1
  config.navai.layers = ()  # the layer profiles' own test profiles layers 1, 5, 11, 12
  config.layers.dendrogram_layers = (1, 11)
  config.layers.figure_layer = 5
  config.layers.min_frames = 2
  config.layers.permutations = 20
  config.layers.top_channels = 2
  config.layers.letters = ('e',)
  config.layers.figure_phonemes = ('a', 't')
  return root, config, variables


def test_figure2_files_hold_the_maps_of_the_found_frames(run):
  root, config, variables = run
  out = str(root / 'figure2')
  result = workflows.figure2(config, variables, 7, out, split='dev', letter='i', num_frames=2)
  assert len(result['windows']) == 2 and (Path(out) / 'figure2_i.png').exists()
  saved = np.load(Path(out) / 'figure2_i.npz')
  target = vocab.letter_id('i')
  # The saved sensitivity is the gradient of the letter's softmax output: central differences
  # in float64 where it is largest (an independent check of the maps the file holds).
  sensitivity = saved['sensitivity'][0]
  with jax.enable_x64(True):
    layers = network.layers_from_variables(
        config, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables))
    x = jnp.asarray(saved['windows'][0], jnp.float64)
    prob = jax.jit(lambda x: jax.nn.softmax(network.logits(layers, x))[target])
    flat = np.argsort(-np.abs(sensitivity).ravel())[:6]
    for t, f in zip(*np.unravel_index(flat, sensitivity.shape)):
      step = jnp.zeros_like(x).at[t, f].set(1e-4)
      fd = (prob(x + step) - prob(x - step)) / 2e-4
      assert float(fd) == pytest.approx(float(sensitivity[t, f]), rel=1e-3)
    # The saved LRP map is the paper's rule in its literal form (eqs. 3-4 written out).
    literal = lrp.relevance(layers, *network.forward(layers, x), jnp.asarray(target),
                            rule='paper', form='literal')
  # Float32 against float64: a few units near zero move eq. 3's ratio (`lrp_test`'s float64
  # test); measured here at most 1.2e-4 of the map's maximum.
  np.testing.assert_allclose(saved['lrp'][0], literal, rtol=1e-3, atol=1e-3)
  assert json.loads(str(saved['meta']))['checkpoint_step'] == 7
  assert list(saved['ids']) == sorted(set(saved['ids']))  # the first frame of each utterance


def test_figure1_files_hold_the_optimized_inputs(run):
  root, config, variables = run
  out = str(root / 'figure1')
  frame, results = workflows.figure1(config, variables, 7, out, split='dev', letter='i')
  assert list(results) == [1, 2, 11, 12] and results[12][0] == vocab.letter_id('i')
  saved = np.load(Path(out) / 'figure1_i.npz')
  # The saved input raises its neuron: its objective, computed here from the model's own VALID
  # pass and the penalties written out, is above that of the start.
  def objective(x, channel):
    _, inter = model.apply_inference(config, variables, jnp.asarray(x)[None], padding='VALID')
    z = inter['layer_2']['pre'][0, :, channel]
    p, st = variables['params']['bn_2'], variables['batch_stats']['bn_2']
    bn = (z - st['mean'][channel]) / jnp.sqrt(st['var'][channel] + config.model.bn_epsilon) * (
        p['scale'][channel]) + p['bias'][channel]
    return float(bn.mean() - 0.001 * np.abs(x).sum() - 0.001 * (np.asarray(x) ** 2).sum())

  channel = results[2][0]
  assert config.am.objective_point == 'bn'
  assert saved['layer_2_objective_I'][0] == pytest.approx(
      objective(saved['layer_2_initial_TxF'], channel), rel=1e-4, abs=1e-5)
  assert objective(saved['layer_2_input_TxF'], channel) > saved['layer_2_objective_I'][-1] > (
      saved['layer_2_objective_I'][0])
  np.testing.assert_array_equal(saved['frame_WxF'], frame.windows_NxWxF[0])
  assert saved['layer_12_objective_I'].shape == (5,)


def test_navai_writes_its_results_and_resumes(run):
  root, config, variables = run
  out = str(root / 'navai')
  result, report = workflows.navai(config, variables, 7, out, workdir=str(root))
  saved = dict(np.load(Path(out) / 'navai_dev.npz'))
  np.testing.assert_array_equal(saved['letter_count'], result.letters.count.astype(np.int64))
  assert result.frames > 20 and result.utterances == 4 and result.timed_utterances == 4
  assert report.startswith(f'NAvAI over the dev split, {result.frames} letter frames of 4 '
                           'utterances (4 with true times).\n\n| method | frames |')
  assert str(saved['about']) == f'dev split, {result.frames} letter frames of 4 utterances'
  assert (Path(out) / 'quality.csv').exists()
  sounds = sorted(os.listdir(Path(out) / 'sound'))
  heard = [f'letter_{c}.wav' for c, n in zip(vocab.LETTERS, saved['letter_count'][2]) if n]
  assert [s for s in sounds if s.startswith('letter_')] == heard
  for name in ('figure3', 'supplement_a_lrp_max', 'tmaps_none', 'phonemes'):
    assert (Path(out) / f'{name}.png').exists(), name
  # A rerun finds the finished pass and writes the same arrays.
  again, _ = workflows.navai(config, variables, 7, out, workdir=str(root))
  assert again.batches == result.batches
  for key, value in dict(np.load(Path(out) / 'navai_dev.npz')).items():
    if key not in ('meta', 'config'):
      np.testing.assert_array_equal(value, saved[key], err_msg=key)
  # Drawn by two spawned processes, the figures are the same pixels; a failed one raises. The
  # last figure (phonemes.png, waited for after all others) cannot be written: a folder of
  # that name is in its place.
  drawn = Path(out) / 'drawn_by_two'
  (drawn / 'phonemes.png').mkdir(parents=True)
  with pytest.raises(OSError):
    workflows.write_navai_figures(config, saved, str(drawn), workers=2)()
  names = sorted(p.name for p in drawn.iterdir() if p.is_file())
  assert 'figure3.png' in names and len(names) >= 12
  assert sorted(names + ['phonemes.png']) == sorted(p for p in os.listdir(out)
                                                    if p.endswith('.png')
                                                    and not p.startswith('quality'))
  for name in names:
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(drawn / name)),
                                  np.asarray(PIL.Image.open(Path(out) / name)), err_msg=name)


def test_layers_clusters_the_profiles_of_the_navai_pass(run, tmp_path, write_split):
  root, config, variables = run
  config = ml_collections.ConfigDict(config.to_dict())
  config.navai.layers = (1, 5, 11, 12)
  # Utterances whose letters (phonemes here) sound until the last frame that has a window.
  rng = np.random.default_rng(1)
  texts = ['hello you cat sat on a dog bed', 'the dog sat by a good old cat', 'a cat and a dog',
           'go to bed you old dog', 'tell us a good tale', 'such a hot day today']
  write_split(tmp_path / 'corpus', 'dev', texts, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=40000)).astype(np.float32))
  config.data.source = f'folder:{tmp_path / "corpus"}'
  with pytest.raises(ValueError, match=r'leaves 3 phoneme class\(es\) unassigned: c, o, y'):
    workflows.layers(config, variables, 7, str(tmp_path / 'refused'), workdir=str(root),
                     navai_dir=str(tmp_path / 'navai'))
  categories = {**{c: 'vowel' for c in 'aeiou'}, **{c: 'plosive' for c in 'bcdgt'},
                **{c: 'fricative' for c in 'fsvhz'}, **{c: 'nasal' for c in 'mn'},
                **{c: 'approximant' for c in 'lrwy'}}
  (tmp_path / 'categories.json').write_text(json.dumps(categories))
  config.layers.categories = str(tmp_path / 'categories.json')
  out = tmp_path / 'layers'
  found = workflows.layers(config, variables, 7, str(out), workdir=str(root),
                           navai_dir=str(tmp_path / 'navai'))
  saved = np.load(tmp_path / 'navai' / 'layers_dev.npz')
  assert list(saved['layers']) == [1, 5, 11, 12]
  names = list(saved['alignments'])
  assert names == ['none', 'gradient_max', 'sensitivity_min', 'sensitivity_max', 'lrp_max']
  assert [(r['layer'], r['alignment']) for r in found['rows']] == [
      (l, n) for l in (1, 5, 11, 12) for n in names]
  # Every score is the clustering of the saved profiles, recomputed here.
  classes = [str(c) for c in saved['phoneme_classes']]
  for row in found['rows'][::3]:
    a = names.index(row['alignment'])
    count = saved[f'layer{row["layer"]}_phoneme_count'][a]
    keep = [y for y in range(len(classes)) if count[y] >= 2]
    profiles = layer_profiles.contrastive(layer_profiles.Sums(
        count[keep], saved[f'layer{row["layer"]}_phoneme_total'][a][keep]))['contrastive']
    again = phoneme_clusters.score(profiles.reshape(len(keep), -1),
                                   [categories[classes[y]] for y in keep], permutations=20)
    assert row['nmi'] == pytest.approx(again['nmi'], abs=1e-4)
    assert row['ari'] == pytest.approx(again['ari'], abs=1e-4)
    assert row['classes'] == len(keep) and 0 <= row['nmi'] <= 1
  # A second run reads the pass's profiles instead of running it again.
  made = os.path.getmtime(tmp_path / 'navai' / 'layers_dev.npz')
  letter = vocab.LETTERS[int(np.argmax(saved['layer5_letter_count'][0]))]
  config.layers.letters = (letter,)
  workflows.layers(config, variables, 7, str(out), workdir=str(root),
                   navai_dir=str(tmp_path / 'navai'))
  assert os.path.getmtime(tmp_path / 'navai' / 'layers_dev.npz') == made
  for name in ('clustering.csv', 'clustering.json', 'clustering.md', 'clustering_by_layer.png',
               'dendrogram_layer1.png', 'dendrogram_layer11.png', 'profiles_layer5.png',
               f'channels_{letter}_layer5.png'):
    assert (out / name).exists(), name
  assert len((out / 'clustering.csv').read_text().splitlines()) == 1 + len(found['rows'])
  config.layers.figure_layer = 3
  with pytest.raises(ValueError, match=r'Layer\(s\) 3 of config.layers are not profiled'):
    workflows.layers(config, variables, 7, str(out), workdir=str(root),
                     navai_dir=str(tmp_path / 'navai'))


def test_layers_without_phoneme_times_says_so(run, tmp_path, write_split):
  root, config, variables = run
  config = ml_collections.ConfigDict(config.to_dict())
  write_split(tmp_path / 'untimed', 'dev', ['cat sat', 'a dog'],
              audio=lambda i, text: np.zeros(32000, np.float32) + 0.01 * i)
  config.data.source = f'folder:{tmp_path / "untimed"}'
  config.navai.layers = (1,)
  config.layers.dendrogram_layers = (1,)
  config.layers.figure_layer = 1
  with pytest.raises(ValueError, match='Clustering phonemes needs phoneme times'):
    workflows.layers(config, variables, 7, str(tmp_path / 'layers'), workdir=str(root),
                     navai_dir=str(tmp_path / 'navai'))
  # A folder without audio, or a transcript without its FLAC, is named as such, not as a
  # lack of phoneme times.
  (tmp_path / 'empty' / 'dev').mkdir(parents=True)
  next((tmp_path / 'untimed').rglob('*.flac')).unlink()
  for folder, problem in ((tmp_path / 'empty', 'No split folders with .flac and .trans.txt'),
                          (tmp_path / 'untimed', r'line without audio; .*\.flac is missing')):
    config.data.source = f'folder:{folder}'
    with pytest.raises(ValueError, match=problem):
      workflows.layers(config, variables, 7, str(tmp_path / 'layers'), workdir=str(root),
                       navai_dir=str(tmp_path / 'navai'))


def _saved_run(workdir, config, variables):
  """A training run folder holding `variables` as its step-3 checkpoint."""
  checkpoints.write_config(workdir, config)
  state = train.jit_init_state(ml_collections.FrozenConfigDict(config),
                               parallel.make_mesh(jax.devices()[:1]))()
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  mngr = checkpoints.manager(workdir)
  checkpoints.save(mngr, 3, state, {'elapsed_seconds': 1.0})
  mngr.wait_until_finished()


def _script(name, workdir, *args):
  """`experiments/NAME.py --workdir=WORKDIR ARGS...` in a subprocess, its output captured."""
  return subprocess.run([sys.executable, f'experiments/{name}.py', f'--workdir={workdir}',
                         *args], cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=600)


def test_navai_script_takes_navai_overrides_and_refuses_others(run, tmp_path):
  root, config, variables = run
  workdir = tmp_path / 'run'
  _saved_run(workdir, config, variables)
  done = _script('navai', workdir, "--config.navai.methods=('none', 'sensitivity_max')",
                 '--config.navai.max_utterances=2')
  assert done.returncode == 0, done.stderr[-3000:]
  saved = np.load(workdir / 'navai' / 'navai_dev.npz')
  assert list(saved['methods']) == ['none', 'sensitivity_max']
  assert json.loads(str(saved['meta']))['utterances'] == 2
  done = _script('navai', workdir, '--config.model.channels=4')
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert "--config.model.channels: a trained run's 'model' settings" in done.stderr
  done = _script('layers', workdir, '--config.layers.figure_layer=13',
                 "--config.navai.layers=(1, 0)")
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert ('config.navai.layers must be distinct layer numbers in 1..12 (() for none), got (1, 0); '
          'config.layers.figure_layer must be a layer number in 1..12, got 13') in done.stderr


@pytest.fixture(scope='module')
def one_utterance_batches(run, tmp_path_factory):
  """A run whose dev pass has four batches of one utterance (two per process of two), and the
  single-process pass over it (`one/`)."""
  root, config, variables = run
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.batch_seconds = 2.0
  tmp = tmp_path_factory.mktemp('hosts')
  _saved_run(tmp / 'run', config, variables)
  one = subprocess.run(_navai_script(tmp) + [f'--out_dir={tmp / "one"}'], cwd=ROOT,
                       env=_ONE_DEVICE, capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]
  return root, config, tmp


# One device per process, so that batches of one utterance are not padded to four rows.
_ONE_DEVICE = {**os.environ, 'PYTHONPATH': str(ROOT),
               'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}


def _navai_script(tmp):
  return [sys.executable, 'experiments/navai.py', f'--workdir={tmp / "run"}']


def _assert_same_pass(one, two):
  single = dict(np.load(one / 'navai_dev.npz'))
  merged = dict(np.load(two / 'navai_dev.npz'))
  assert single['letter_count'].sum() > 20
  for key, value in single.items():
    if key in ('meta', 'config'):
      continue
    if value.dtype.kind in 'iuUS':
      np.testing.assert_array_equal(merged[key], value, err_msg=key)
    else:
      np.testing.assert_allclose(merged[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  meta_one, meta_two = (json.loads(str(d['meta'])) for d in (single, merged))
  assert meta_two['frames'] == meta_one['frames'] and meta_two['processes'] == 2
  assert meta_two['utterances'] == meta_one['utterances'] == 4
  assert (two / 'quality.md').read_text() == (one / 'quality.md').read_text()


def _batches_read(out_dir, process):
  return int(np.load(out_dir / f'pass_state.process{process}of2.npz')['batches'])


def test_two_processes_merge_to_the_single_process_pass(one_utterance_batches, local_hosts):
  _, _, tmp = one_utterance_batches
  hosts = local_hosts.start(_navai_script(tmp) + [f'--out_dir={tmp / "two"}'], tmp / 'logs_two')
  local_hosts.wait(hosts, tmp / 'logs_two')
  _assert_same_pass(tmp / 'one', tmp / 'two')
  # Each process kept its own share in its own state file, from which it resumes.
  assert [_batches_read(tmp / 'two', i) for i in range(2)] == [2, 2]


def _truncate(path):
  """Cuts a FLAC file to half its bytes: its header (and so the index) stays as it was, and
  reading its audio raises a DataError naming it."""
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_a_killed_host_resumes_its_own_share_without_reading_it_again(one_utterance_batches,
                                                                     local_hosts):
  root, config, tmp = one_utterance_batches
  share = [str(b['id'][0]) for b in data.batches(config, 'dev', train=False, share=(1, 2))]
  flac = [next((root / 'corpus' / 'dev').rglob(f'{u}.flac')) for u in share]
  intact = [f.read_bytes() for f in flac]
  out, logs = tmp / 'killed', tmp / 'logs_killed'
  try:
    # Host 1 folds its first batch, then fails on the audio of its second one; both hosts
    # are then killed (host 0 would wait for host 1 at the merge).
    _truncate(flac[1])
    hosts = local_hosts.start(_navai_script(tmp) + [f'--out_dir={out}'], logs)
    try:
      deadline = time.monotonic() + 600
      while hosts[1].poll() is None and share[1] not in (logs / 'host1.txt').read_text():
        assert time.monotonic() < deadline, (logs / 'host1.txt').read_text()[-3000:]
        time.sleep(0.2)
    finally:
      for h in hosts:
        h.send_signal(signal.SIGKILL)
        h.wait()
    assert f'{share[1]}.flac: cannot read audio' in (logs / 'host1.txt').read_text()
    assert _batches_read(out, 1) == 1
    assert not (out / 'navai_dev.npz').exists()
    # The rerun reads only what is left: host 1's folded batch is now unreadable, its second
    # one whole again, and the merged pass equals the single-process one.
    flac[1].write_bytes(intact[1])
    _truncate(flac[0])
    local_hosts.wait(local_hosts.start(_navai_script(tmp) + [f'--out_dir={out}'], logs), logs)
  finally:
    for f, b in zip(flac, intact):
      f.write_bytes(b)
  assert [_batches_read(out, i) for i in range(2)] == [2, 2]
  _assert_same_pass(tmp / 'one', out)


def test_attribution_evaluation_script_writes_its_table_and_refuses_unknown_names(run,
                                                                                   tmp_path):
  root, config, variables = run
  workdir = tmp_path / 'run'
  _saved_run(workdir, config, variables)
  done = _script('evaluate_attributions', workdir,
                 "--config.attributions.methods=('gradient_x_input', 'random')",
                 "--config.attributions.metrics=('deletion', 'sparseness')",
                 "--config.attributions.granularities=('column',)")
  assert done.returncode == 0, done.stderr[-3000:]
  out = workdir / 'attributions'
  saved = json.loads((out / 'attributions.json').read_text())
  assert saved['frames'] == config.attributions.max_frames
  assert sorted(saved['per_frame']) == ['gradient_x_input', 'random']
  table = (out / 'attributions.md').read_text()
  assert '| gradient_x_input |' in table and '| random |' in table and table in done.stdout + '\n'
  rows = (out / 'attributions.csv').read_text().splitlines()
  mean = np.mean(saved['per_frame']['random']['sparseness'])
  assert any(r.startswith('random,sparseness,') and abs(float(r.split(',')[2]) - mean) < 1e-5
             for r in rows)
  assert (out / 'attribution_curves.png').stat().st_size > 0
  done = _script('evaluate_attributions', workdir,
                 "--config.attributions.methods=('sensitivty',)")
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert "unknown method(s) 'sensitivty'" in done.stderr


def test_scripts_on_a_trained_run_read_another_corpus_with_data_source(run, tmp_path,
                                                                      write_split):
  root, config, variables = run
  workdir = tmp_path / 'run'
  _saved_run(workdir, config, variables)
  rng = np.random.default_rng(5)
  other = tmp_path / 'other'
  write_split(other, 'dev', ['go on', 'hi'], speaker=9, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  done = _script('evaluate', workdir, '--split=dev', f'--data_source=folder:{other}')
  assert done.returncode == 0, done.stderr[-3000:]
  written = list(workdir.glob('eval_folder_*_dev.json'))
  assert len(written) == 1 and not (workdir / 'eval.json').exists()  # the run's own is kept
  result = json.loads(written[0].read_text())
  assert result['num_utterances'] == 2 and result['source'] == f'folder:{other}'
  done = _script('navai', workdir, f'--data_source=folder:{other}',
                 f'--out_dir={tmp_path / "navai"}')
  assert done.returncode == 0, done.stderr[-3000:]
  meta = json.loads(str(np.load(tmp_path / 'navai' / 'navai_dev.npz')['meta']))
  assert meta['utterances'] == 2
  done = _script('introspect', workdir, '--data_source=hf:librispeech')
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert "config.data.source must be 'folder:PATH' or 'tfds:NAME', got 'hf:librispeech'" in (
      done.stderr)


def test_explain_audio_reads_any_rate_and_channels_and_explains_every_letter(run, tmp_path):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from navai_jax import features  # pylint: disable=g-import-not-at-top
  from navai_jax import frames  # pylint: disable=g-import-not-at-top
  from navai_jax import recording  # pylint: disable=g-import-not-at-top
  _, config, variables = run
  rng = np.random.default_rng(0)
  folder = tmp_path / 'recordings'
  folder.mkdir()
  left = (0.1 * rng.normal(size=48000 * 3)).astype(np.float32)
  sf.write(folder / 'me.wav', np.stack([left, 0.5 * left], 1), 48000)  # stereo, 48 kHz
  sf.write(folder / 'you.ogg', left[:66150], 22050)
  sf.write(folder / 'short.flac', left[:16000], 16000)
  sf.write(folder / 'quiet.wav', np.zeros(48000, np.float32), 16000)
  (folder / 'broken.wav').write_text('not audio')
  # Resampling keeps a tone's frequency and the duration.
  t = np.arange(48000 * 2) / 48000
  sf.write(tmp_path / 'tone.wav', np.sin(2 * np.pi * 1000 * t).astype(np.float32), 48000)
  tone, notes = recording.read_recording(str(tmp_path / 'tone.wav'), config)
  assert notes == ['resampled from 48000 Hz to 16000 Hz'] and len(tone) == 32000
  assert np.argmax(np.abs(np.fft.rfft(tone))) * 16000 / len(tone) == pytest.approx(1000, abs=1)
  done = workflows.explain_audio(config, variables, 7, str(folder), str(tmp_path / 'out'))
  by_name = {Path(d['path']).name: d for d in done}
  assert sorted(by_name) == ['broken.wav', 'me.wav', 'quiet.wav', 'short.flac', 'you.ogg']
  assert 'cannot be read as audio' in by_name['broken.wav']['error']
  assert 'is silent (peak all zeros)' in by_name['quiet.wav']['error']
  assert 'lasts 1.00 s; the network needs at least 1.67 s' in by_name['short.flac']['error']
  assert by_name['me.wav']['notes'] == ['2 channels mixed to mono',
                                        'resampled from 48000 Hz to 16000 Hz']
  assert by_name['you.ogg']['notes'] == ['resampled from 22050 Hz to 16000 Hz']
  # The frames are those of the resampled mono audio, with the library's maps.
  mono, _ = recording.read_recording(str(folder / 'me.wav'), config)
  x, frames_B = features.log_mel(jnp.asarray(mono)[None], jnp.asarray([len(mono)]), config)
  found = frames.collect(config, variables, x, frames_B)
  saved = np.load(tmp_path / 'out' / 'me' / 'maps.npz')
  report = json.loads((tmp_path / 'out' / 'me' / 'frames.json').read_text())
  assert len(report['frames']) == len(found) == by_name['me.wav']['frames'] > 0
  assert [f['letter'] for f in report['frames']] == found.letters
  np.testing.assert_allclose(saved['lrp'], attribution.attribute(
      'lrp', config, variables, found.windows_NxWxF, found.tokens_N, rule='paper'),
                             rtol=1e-4, atol=1e-6)
  assert (tmp_path / 'out' / 'me' / 'transcript.txt').read_text().strip() == report['transcript']
  for letter in set(found.letters):
    assert (tmp_path / 'out' / 'me' / f'maps_{letter}.png').exists()
  # One file: its problem is the error; only the asked letters are explained.
  with pytest.raises(ValueError, match='is silent'):
    workflows.explain_audio(config, variables, 7, str(folder / 'quiet.wav'), str(tmp_path / 'o'))
  letter = found.letters[0]
  one = workflows.explain_audio(config, variables, 7, str(folder / 'me.wav'),
                                str(tmp_path / 'one'), letters=[letter])
  assert one[0]['frames'] == found.letters.count(letter)


def test_a_second_navai_pass_into_a_busy_folder_refuses(run, tmp_path):
  root, config, variables = run
  out = tmp_path / 'navai'
  with files.locked(out, 'the NAvAI pass'):
    with pytest.raises(files.FolderInUse, match='navai is in use by the NAvAI pass'):
      workflows.navai(config, variables, 7, str(out), workdir=str(root))
  assert sorted(p.name for p in out.iterdir()) == [files.LOCK_FILE]
