"""NAvAI over a split end to end: the files hold what the pass computed, a rerun resumes, the
channel atlas reads it, two hosts merge to one, the script takes navai overrides and refuses
others, a busy folder refuses."""

import json
import os
from pathlib import Path
import signal
import sys
import time

import ml_collections
import numpy as np
import PIL.Image
import pytest
import soundfile as sf

from navai_jax.speech import data
from navai_jax.core import files
from navai_jax.introspection import channel_labels
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.stages import atlas
from navai_jax.stages import layer_clusters
from navai_jax.stages import navai_split
from navai_jax.training import checkpoints

ROOT = Path(__file__).resolve().parents[1]


def test_navai_writes_its_results_and_resumes(stage_run):
  root, config, variables = stage_run
  out = str(root / 'navai')
  result, report = navai_split.run(config, variables, 7, out, workdir=str(root))
  saved = dict(np.load(Path(out) / 'navai_dev.npz'))
  np.testing.assert_array_equal(saved['letter_count'], result.letters.count.astype(np.int64))
  assert result.frames > 20 and result.utterances == 4 and result.timed_utterances == 4
  assert report.startswith(f'NAvAI over the dev split, {result.frames} letter frames of 4 '
                           'utterances (4 with true times).\n\n| method | frames |')
  assert str(saved['about']) == f'dev split, {result.frames} letter frames of 4 utterances'
  assert (Path(out) / 'quality.csv').exists()
  concept = np.load(Path(out) / 'concepts_dev.npz')
  np.testing.assert_array_equal(concept['layer6_letter_count'], saved['letter_count'][0])
  shown = [c for c, n in zip(vocab.LETTERS, saved['letter_count'][0]) if n]
  table = (Path(out) / 'concepts.md').read_text()
  assert '## Layer 6' in table and all(f'| letter {c} |' in table for c in shown)
  # Reference frames name utterances of the split (one each, at most its 4); every channel
  # has a label (channel_labels_test) or none.
  score, ids = concept['layer6_ref_score'], concept['layer6_ref_id']
  assert score.shape == ids.shape == (2, 8, config.navai.references)
  assert (np.isfinite(score).sum(-1) == 4).all()
  assert set(ids[np.isfinite(score)]) == set(data.load_split(config, 'dev').ids)
  assert concept['layer6_label'].shape == (8,) and '## Channel labels' in table
  sounds = sorted(os.listdir(Path(out) / 'sound'))
  sonified = list(saved['methods']).index(config.navai.sonify_method)
  heard = [f'letter_{c}.wav' for c, n in zip(vocab.LETTERS, saved['letter_count'][sonified]) if n]
  assert [s for s in sounds if s.startswith('letter_')] == heard
  for name in ('figure3', 'supplement_a_lrp_max', 'tmaps_none', 'phonemes'):
    assert (Path(out) / f'{name}.png').exists(), name
  # A rerun finds the finished pass and writes the same arrays; its figures, drawn again by
  # two spawned processes, are the same pixels. A figure that fails in a drawing process
  # raises: the last one (phonemes.png, waited for after all others) cannot be written, a
  # folder of that name is in its place; the others are written.
  drawn_here = {p.name: np.asarray(PIL.Image.open(p)) for p in Path(out).glob('*.png')}
  for name in drawn_here:
    os.remove(Path(out) / name)
  (Path(out) / 'phonemes.png').mkdir()
  config = ml_collections.ConfigDict(config.to_dict())
  config.navai.figure_workers = 2
  with pytest.raises(OSError):
    navai_split.run(config, variables, 7, out, workdir=str(root))
  for key, value in dict(np.load(Path(out) / 'navai_dev.npz')).items():
    if key not in ('meta', 'config'):
      np.testing.assert_array_equal(value, saved[key], err_msg=key)
  drawn_again = [p.name for p in Path(out).glob('*.png') if p.is_file()]
  assert sorted(drawn_again) == sorted(set(drawn_here) - {'phonemes.png'})
  for name in drawn_again:
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(Path(out) / name)),
                                  drawn_here[name], err_msg=name)
  # The channel atlas of this pass (stages/atlas.py): every letter's frames split over its
  # channels' conditional NAvAI without loss, a card and sounds per chosen channel, bad
  # settings refused.
  config = ml_collections.ConfigDict(config.to_dict())
  config.navai.figure_workers = 1
  config.atlas.layers = (6,)
  config.atlas.channels_per_letter = 8  # every channel of layer 6: no frame is left out
  config.atlas.crops = 1
  config.atlas.sounds = 1
  config.atlas.max_utterances = 0
  config.atlas.method = 'none'
  navai_dir, out = out, Path(out).parent / 'atlas'
  found = atlas.run(config, variables, 7, str(out), workdir=str(root), navai_dir=navai_dir)
  saved = np.load(out / 'atlas_layer6.npz')
  count, total = saved['conditional_count'], saved['letter_count']
  assert total.sum() > 20
  # Each frame is carried most by one channel: the channels' frames are the letter's frames,
  # and their patterns, weighted by their frames, add up to the letter's pattern.
  np.testing.assert_array_equal(count.sum(1), total)
  for y in np.flatnonzero(total):
    weighted = sum(count[y, s] * saved['conditional_pattern'][y, s]
                   for s in range(8) if count[y, s])
    np.testing.assert_allclose(weighted, total[y] * saved['letter_pattern'][y], rtol=1e-3,
                               atol=1e-3 * total[y])
  concepts_saved = np.load(Path(navai_dir) / 'concepts_dev.npz')
  np.testing.assert_array_equal(saved['channels'], atlas.letter_channels(concepts_saved, 6, 8))
  # A card per channel that carries a letter, and the sound of its best references, as long
  # as the unit's receptive field.
  specs = model.layer_specs(config.model)
  _, span = channel_labels.unit_field(specs, 6, 0)
  c = config.features
  for channel in found['layers'][6]['channels']:
    assert (out / 'cards' / f'layer6_channel{channel}.png').exists()
    for kind in ('relevance', 'activation'):
      audio, rate = sf.read(out / 'sound' / f'layer6_channel{channel}_{kind}_1.wav')
      assert rate == c.sample_rate and len(audio) == (span - 1) * c.hop + c.window
  text = (out / 'atlas.md').read_text()
  assert all(f'| {vocab.LETTERS[y]} | {total[y]} |' in text for y in np.flatnonzero(total))
  # Bad settings: one line each.
  config.atlas.layers = (5,)
  with pytest.raises(ValueError, match=r'Atlas layer\(s\) 5 are not among'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=navai_dir)
  config.atlas.layers = (6,)
  config.atlas.channels_per_letter = 9
  with pytest.raises(ValueError, match='layer 6 has 8 channels'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=navai_dir)
  config.atlas.channels_per_letter = 2
  config.navai.references = 0
  with pytest.raises(ValueError, match='navai.references'):
    atlas.run(config, variables, 7, str(out), workdir=str(root),
              navai_dir=navai_dir)


def test_navai_settings_refuse_other_overrides_and_bad_layers(stage_run, tmp_path, saved_run):
  """Refusals in the scripts' own words (their exit in one line: `cli_test`, and the refused
  data source below; the navai overrides a script takes: the other-corpus test below)."""
  root, config, variables = stage_run
  workdir = tmp_path / 'run'
  saved_run(workdir, config, variables)
  with pytest.raises(ValueError, match=r"--config.model.channels: a trained run's 'model' "
                                       'settings'):
    checkpoints.load_for_inference(workdir, None, {'model.channels': 4})
  config = ml_collections.ConfigDict(config.to_dict())
  config.layer_clusters.figure_layer = 13
  config.navai.layers = (1, 0)
  with pytest.raises(ValueError) as refused:
    layer_clusters.run(config, variables, 3, str(tmp_path / 'refused'), workdir=str(workdir))
  assert ('config.navai.layers must be distinct layer numbers in 1..12 (() for none), got (1, 0); '
          'config.layer_clusters.figure_layer must be a layer number in 1..12, got 13'
          ) in str(refused.value)


@pytest.fixture(scope='module')
def one_utterance_batches(stage_run, tmp_path_factory, saved_run):
  """A run whose dev pass has four batches of one utterance (two per process of two), and the
  pass over it in this process (`one/`)."""
  root, config, variables = stage_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.batch_seconds = 2.0
  config.navai.methods = ('lrp_max',)  # hosts and merges do not depend on the methods
  config.navai.sonify_method = 'lrp_max'
  tmp = tmp_path_factory.mktemp('hosts')
  saved_run(tmp / 'run', config, variables)
  # Here, on four devices: the four utterances in one batch, the same sums.
  navai_split.run(config, variables, 3, str(tmp / 'one'), workdir=str(tmp / 'run'))
  return root, config, tmp


def _navai_script(tmp):
  return [sys.executable, 'experiments/navai.py', f'--workdir={tmp / "run"}']


def _assert_same_pass(one, two):
  # The moments, and the concept shares, reference frames and labels (merged across hosts).
  for name in ('navai_dev.npz', 'concepts_dev.npz'):
    single, merged = dict(np.load(one / name)), dict(np.load(two / name))
    for key, value in single.items():
      if key in ('meta', 'config'):
        continue
      if value.dtype.kind in 'iuUSb':
        np.testing.assert_array_equal(merged[key], value, err_msg=key)
      else:
        np.testing.assert_allclose(merged[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  assert single['layer6_ref_id'].size and set(single) == set(merged)
  single = dict(np.load(one / 'navai_dev.npz'))
  merged = dict(np.load(two / 'navai_dev.npz'))
  assert single['letter_count'].sum() > 20
  meta_one, meta_two = (json.loads(str(d['meta'])) for d in (single, merged))
  assert meta_two['frames'] == meta_one['frames'] and meta_two['processes'] == 2
  assert meta_two['utterances'] == meta_one['utterances'] == 4
  assert (two / 'quality.md').read_text() == (one / 'quality.md').read_text()


def _batches_read(out_dir, process):
  return int(np.load(out_dir / f'pass_state.process{process}of2.npz')['batches'])


def _truncate(path):
  """Cuts a FLAC file to half its bytes: its header (and so the index) stays as it was, and
  reading its audio raises a DataError naming it."""
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_two_hosts_merge_to_one_and_a_killed_host_resumes_its_own_share(one_utterance_batches,
                                                                        local_hosts):
  """Two processes, one killed and both rerun, end with the single-process pass; each kept its
  own share in its own state file, from which it resumed without reading it again."""
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


def test_scripts_on_a_trained_run_read_another_corpus_with_data_source(
    stage_run, tmp_path, write_split, saved_run, run_script):
  root, config, variables = stage_run
  workdir = tmp_path / 'run'
  saved_run(workdir, config, variables)
  rng = np.random.default_rng(5)
  other = tmp_path / 'other'
  write_split(other, 'dev', ['go on', 'hi'], speaker=9, timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  done = run_script('evaluate', workdir, '--split=dev', f'--data_source=folder:{other}')
  assert done.returncode == 0, done.stderr[-3000:]
  written = list(workdir.glob('eval_folder_*_dev.json'))
  assert len(written) == 1 and not (workdir / 'eval.json').exists()  # the run's own is kept
  result = json.loads(written[0].read_text())
  assert result['num_utterances'] == 2 and result['source'] == f'folder:{other}'
  # The navai script takes navai overrides beside the other corpus.
  done = run_script('navai', workdir, f'--data_source=folder:{other}',
                    f'--out_dir={tmp_path / "navai"}',
                    "--config.navai.methods=('none', 'sensitivity_max')",
                    '--config.navai.sonify_method=none', '--config.navai.max_utterances=1')
  assert done.returncode == 0, done.stderr[-3000:]
  saved = np.load(tmp_path / 'navai' / 'navai_dev.npz')
  assert list(saved['methods']) == ['none', 'sensitivity_max']
  meta = json.loads(str(saved['meta']))
  assert meta['utterances'] == 1 and meta['source'] == f'folder:{other}'
  # The atlas script loads the run (cli.define_trained_run) and refuses a layer the pass
  # does not condition on, in one line.
  done = run_script('atlas', workdir, f'--navai_dir={tmp_path / "navai"}',
                    '--config.atlas.layers=(5,)')
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert done.stderr.strip().endswith('atlas.py: Atlas layer(s) 5 are not among '
                                      'config.navai.concept_layers (6).')
  done = run_script('introspect', workdir, '--data_source=hf:librispeech')
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert "config.data.source must be 'folder:PATH' or 'tfds:NAME', got 'hf:librispeech'" in (
      done.stderr)


def test_a_second_navai_pass_into_a_busy_folder_refuses(stage_run, tmp_path):
  root, config, variables = stage_run
  out = tmp_path / 'navai'
  with files.locked(out, 'the NAvAI pass'):
    with pytest.raises(files.FolderInUse, match='navai is in use by the NAvAI pass'):
      navai_split.run(config, variables, 7, str(out), workdir=str(root))
  assert sorted(p.name for p in out.iterdir()) == [files.LOCK_FILE]
