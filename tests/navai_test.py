"""NAvAI: alignment shifts, streaming moments, t-maps, and the sharded, resumable pass."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ml_collections
import scipy.stats

from navai_jax import attribution
from navai_jax import features
from navai_jax import frames
from navai_jax import model
from navai_jax import navai
from navai_jax import parallel
from navai_jax import vocab
from navai_jax.configs import default


def test_shift_moves_known_position_to_centre_with_zeros():
  # Column t of the window holds t + 1, so every value names its source column.
  window = jnp.broadcast_to(jnp.arange(1.0, 207.0)[:, None], (206, 3))
  windows = jnp.stack([window, window, window])
  aligned = np.asarray(navai.shift_to_centre(windows, jnp.array([140, 50, 103])))
  # p = 140: column 140 lands on 103; the last 37 columns are shifted-in zeros.
  np.testing.assert_array_equal(aligned[0, :169, 0], np.arange(38, 207))
  np.testing.assert_array_equal(aligned[0, 169:], 0)
  assert aligned[0, 103, 0] == 141
  # p = 50: column 50 lands on 103; the first 53 columns are zeros.
  np.testing.assert_array_equal(aligned[1, :53], 0)
  np.testing.assert_array_equal(aligned[1, 53:, 1], np.arange(1, 154))
  assert aligned[1, 103, 2] == 51
  np.testing.assert_array_equal(aligned[2], window)


def test_recut_reads_the_utterance_and_zeros_beyond_it():
  t, f = 300, 2
  x = jnp.broadcast_to(jnp.arange(1.0, t + 1)[:, None], (t, f))[None]
  frames_B = jnp.array([280])  # frames 280..299 are padding
  start, p = jnp.array([60]), jnp.array([150])
  recut = np.asarray(navai.cut_aligned(x, frames_B, jnp.array([0]), start, p, 'recut'))[0, :, 0]
  zeros = np.asarray(navai.cut_aligned(x, frames_B, jnp.array([0]), start, p, 'zeros'))[0, :, 0]
  # Column 103 shows utterance frame start + p = 210 (value 211) in both modes.
  assert recut[103] == zeros[103] == 211
  # Recut continues with the utterance up to its last frame 279, then zeros.
  np.testing.assert_array_equal(recut[:173], np.arange(108, 281))
  np.testing.assert_array_equal(recut[173:], 0)
  # Zeros mode stops where the original window [60, 266) ends.
  np.testing.assert_array_equal(zeros[:159], np.arange(108, 267))
  np.testing.assert_array_equal(zeros[159:], 0)
  # Where the window itself runs past the start, recut reads earlier frames; zeros does not.
  early = np.asarray(navai.cut_aligned(x, frames_B, jnp.array([0]), jnp.array([60]),
                                       jnp.array([20]), 'recut'))[0, :, 0]
  np.testing.assert_array_equal(early[:23], 0)  # utterance frames -23..-1 do not exist
  np.testing.assert_array_equal(early[23:], np.arange(1, 184))


def test_alignment_positions_take_time_of_extremes():
  maps = np.zeros((3, 206, 4), np.float32)
  maps[0, 17, 2], maps[0, 190, 1] = 5.0, -3.0
  maps[1, 40, 0], maps[1, 41, 3] = 2.0, 2.0  # tie: the earliest element wins
  maps[1, 5, 0] = -1.0
  maps[2, 100, 3], maps[2, 3, 3] = 1.0, -1.0
  maps = jnp.asarray(maps)
  np.testing.assert_array_equal(navai.alignment_positions('sensitivity_max', maps), [17, 40, 100])
  np.testing.assert_array_equal(navai.alignment_positions('sensitivity_min', maps), [190, 5, 3])
  np.testing.assert_array_equal(navai.alignment_positions('lrp_max', None, maps), [17, 40, 100])
  np.testing.assert_array_equal(navai.alignment_positions('none', num_frames=2), [103, 103])
  with pytest.raises(ValueError, match='Unknown alignment method'):
    navai.alignment_positions('lrp_min', maps)
  with pytest.raises(ValueError, match='needs its attribution map'):
    navai.alignment_positions('lrp_max', maps)
  with pytest.raises(ValueError, match='Unknown fill'):
    navai.cut_aligned(maps, jnp.array([206] * 3), jnp.arange(3), jnp.zeros(3, int),
                      jnp.zeros(3, int), 'mirror')


def _random_frames(seed, n, num_classes, shape=(206, 5)):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n,) + shape).astype(np.float32) * 2 + 3
  classes = rng.integers(-1, num_classes + 1, size=n)  # -1 and num_classes are ignored
  valid = rng.random(n) > 0.2
  return x, classes, valid


def test_streaming_moments_equal_mean_and_variance():
  x, classes, valid = _random_frames(0, 300, 4)
  m = navai.empty_moments(4, x.shape[1:])
  for lo, hi in [(0, 100), (100, 101), (101, 201), (201, 300)]:  # uneven batches
    m = navai.fold(m, jnp.asarray(x[lo:hi]), jnp.asarray(classes[lo:hi]),
                   jnp.asarray(valid[lo:hi]))
  var = navai.variance(m)
  for c in range(4):
    mine = x[(classes == c) & valid]
    assert m.count[c] == len(mine)
    np.testing.assert_allclose(m.mean[c], jnp.mean(mine, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var[c], jnp.var(mine, axis=0, ddof=1), rtol=1e-4, atol=1e-5)
  every = x[(classes >= 0) & (classes < 4) & valid]
  whole = navai.reduce_moments(m, axis=-1)
  np.testing.assert_allclose(whole.mean, jnp.mean(every, axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(navai.variance(whole), jnp.var(every, axis=0, ddof=1), rtol=1e-4)


def test_merging_with_an_empty_state_changes_nothing():
  x, classes, valid = _random_frames(1, 50, 3)
  m = navai.batch_moments(jnp.asarray(x), jnp.asarray(classes), jnp.asarray(valid), 3)
  empty = navai.empty_moments(3, x.shape[1:])
  for merged in (navai.combine(empty, m), navai.combine(m, empty)):
    for got, want in zip(merged, m):
      np.testing.assert_array_equal(got, want)


def test_tmap_equals_scipy_welch_test():
  x, classes, valid = _random_frames(2, 120, 3, shape=(206, 2))
  m = navai.fold(navai.empty_moments(3, x.shape[1:]), jnp.asarray(x), jnp.asarray(classes),
                 jnp.asarray(valid))
  summary = navai.summarize(m)
  every = x[(classes >= 0) & (classes < 3) & valid]
  for c in range(3):
    mine = x[(classes == c) & valid]
    want = scipy.stats.ttest_ind(mine, every, axis=0, equal_var=False).statistic
    np.testing.assert_allclose(summary['tmap'][c], want, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(summary['normalized'][c], mine.mean(0) - every.mean(0),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope='module')
def tiny():
  config = default.get_config('tiny')
  variables = model.init_variables(config, jax.random.key(0))
  # Non-trivial batch statistics, so batch norm in inference mode matters; an output bias
  # against non-letters, so that many positions are predicted as (varied) letters.
  stats = jax.tree.map(lambda a: a + 0.2, variables['batch_stats'])
  params = jax.tree.map(lambda a: a, variables['params'])
  is_letter = (jnp.arange(vocab.SIZE) >= vocab.LETTER_IDS[0]) & (
      jnp.arange(vocab.SIZE) <= vocab.LETTER_IDS[-1])
  params['conv_12']['bias'] = jnp.where(is_letter, 0.0, -5.0)
  return config, {'params': params, 'batch_stats': stats}


def _batches(num_batches, rows=4, samples=30000, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for b in range(num_batches):
    lengths = rng.integers(samples - 2500, samples + 1, size=rows).astype(np.int32)
    audio = rng.normal(size=(rows, samples)).astype(np.float32) * 0.1
    audio[np.arange(samples)[None] >= lengths[:, None]] = 0.0
    weights = np.ones(rows, np.float32)
    weights[-1] = float(b != 1)  # one filler row
    out.append({'audio': audio, 'audio_lengths': lengths, 'weights': weights,
                'id': np.array([f'1-1-{b:02d}{r}' for r in range(rows)]),
                'text': np.array(['x'] * rows)})
  return out


# Every pass below uses these settings, so each device count compiles the pass step once.
PASS = dict(methods=navai.ALIGNMENTS, fill='recut', frame_batch=8, phoneme_classes=('a', 't'))


@pytest.fixture
def timings(tmp_path):
  """Timing of one utterance (the first of every `_batches`): /a/ until 0.9 s, then /t/."""
  timing = {'id': '1-1-000', 'words': [{'word': 'X', 'start': 0.0, 'end': 5.0}], 'phonemes': [
      {'phoneme': "'a", 'start': 0.0, 'end': 0.9}, {'phoneme': 't', 'start': 0.9, 'end': 5.0}]}
  (tmp_path / 't.json').write_text(json.dumps(timing))
  return {'1-1-000': str(tmp_path / 't.json')}


def test_pass_equals_direct_average_of_frames(tiny, timings):
  config, variables = tiny
  batches = _batches(2)
  result = navai.run_pass(config, variables, batches, timings=timings,
                          mesh=parallel.make_mesh(jax.devices()[:1]), **PASS)
  direct, phoneme_frames = [], {0: 0, 1: 0}
  specs = model.layer_specs(config.model)
  for batch in batches:
    x, frames_B = features.log_mel(jnp.asarray(batch['audio']),
                                   jnp.asarray(batch['audio_lengths']), config)
    keep = batch['weights'] > 0
    found = frames.collect(config, variables, x[keep], frames_B[keep])
    direct.append(found)
    if batch['id'][0] == '1-1-000':
      centre = features.frame_to_seconds(
          model.window_start(specs, found.positions_N[found.utterance_N == 0]) + 103, config)
      phoneme_frames = {0: int((centre < 0.9).sum()), 1: int((centre >= 0.9).sum())}
  windows = np.concatenate([f.windows_NxWxF for f in direct])
  letters = np.concatenate([f.tokens_N for f in direct]) - vocab.LETTER_IDS[0]
  assert result.frames == len(windows) > 20
  assert result.utterances == 7 and result.batches == 2
  # Method 0 ('none') keeps every frame where it is: the averages are those of the windows.
  for c in np.unique(letters):
    np.testing.assert_allclose(result.letters.mean[0, c], windows[letters == c].mean(0),
                               rtol=1e-4, atol=1e-4)
    assert result.letters.count[0, c] == (letters == c).sum()
  assert (result.letters.count.sum(1) == len(windows)).all()
  # Phoneme classes: the phoneme sounding at the window centre.
  assert result.phonemes.count[0].tolist() == [phoneme_frames[0], phoneme_frames[1]]
  assert min(phoneme_frames.values()) > 0
  # Only the timed utterance is scored; its frames are matched to the one spoken letter or not.
  assert result.timed_utterances == 1
  scored = result.quality['histogram'][0].sum() + result.quality['unmatched'].sum()
  assert scored == sum(phoneme_frames.values())


def _interrupted(batches, after):
  for i, batch in enumerate(batches):
    if i == after:
      raise KeyboardInterrupt('simulated kill')
    yield batch


def test_sharded_resumed_pass_equals_single_device_uninterrupted(tiny, timings, tmp_path):
  config, variables = tiny
  batches = _batches(3, seed=1)
  kw = dict(PASS, save_every=2, timings=timings)
  single = navai.run_pass(config, variables, batches, mesh=parallel.make_mesh(jax.devices()[:1]),
                          **kw)
  mesh = parallel.make_mesh(jax.devices()[:4])
  assert mesh.size == 4
  uninterrupted = navai.run_pass(config, variables, batches, mesh=mesh, **kw)
  path = str(tmp_path / 'state.npz')
  with pytest.raises(KeyboardInterrupt):
    navai.run_pass(config, variables, _interrupted(batches, 2), mesh=mesh, state_path=path,
                   **kw)
  with np.load(path) as saved:
    assert int(saved['batches']) == 2
  resumed = navai.run_pass(config, variables, batches, mesh=mesh, state_path=path, **kw)
  assert resumed.batches == 3 and resumed.utterances == uninterrupted.utterances == 11
  for got, want in zip(resumed.letters + resumed.phonemes,
                       uninterrupted.letters + uninterrupted.phonemes):
    np.testing.assert_array_equal(got, want)
  for key in ('histogram', 'unmatched'):
    np.testing.assert_array_equal(resumed.quality[key], single.quality[key])
  for got, want in zip(uninterrupted.letters + uninterrupted.phonemes,
                       single.letters + single.phonemes):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
  assert single.frames > 20
  # The alignments moved frames: each differs from no alignment.
  for m in (1, 2, 3):
    assert not np.allclose(single.letters.mean[0], single.letters.mean[m])
  with pytest.raises(ValueError, match='other settings'):
    navai.run_pass(config, variables, batches, mesh=mesh, state_path=path,
                   **dict(kw, fill='zeros'))


def test_pass_positions_are_the_extremes_of_the_attribution_maps(tiny):
  config, variables = tiny
  batch = _batches(1, seed=1)[0]
  mesh = parallel.make_mesh(jax.devices()[:1])
  step = navai.make_pass_step(ml_collections.FrozenConfigDict(config), mesh, PASS['methods'],
                              PASS['fill'], PASS['frame_batch'])
  state = navai.spread_devices(navai.empty_pass_state(4, 2), mesh)
  num_frames = int(features.num_frames(batch['audio'].shape[1]))
  _, tokens, positions = step(variables, state, batch['audio'], batch['audio_lengths'],
                              batch['weights'], np.full((4, num_frames), -1, np.int32))
  rows, where = np.nonzero(np.asarray(positions)[..., 0] >= 0)
  assert len(rows) > 10 and set(rows) == {0, 1, 2, 3}
  x, _ = features.log_mel(jnp.asarray(batch['audio']), jnp.asarray(batch['audio_lengths']),
                          config)
  windows = frames.gather_windows(config, x, rows, where)
  targets = np.asarray(tokens)[rows, where]
  sensitivity = attribution.attribute('sensitivity', config, variables, windows, targets)
  relevance = attribution.attribute('lrp', config, variables, windows, targets, rule='paper')
  got = np.asarray(positions)[rows, where]
  np.testing.assert_array_equal(got[:, 0], 103)
  # Each position holds the extreme of its map; ties and rounding (LRP from the shared pass
  # against LRP of the window) may pick another column whose extreme is as large.
  n = np.arange(len(rows))
  checks = [(sensitivity, -1, navai.time_of_min), (sensitivity, 1, navai.time_of_max),
            (relevance, 1, navai.time_of_max)]
  for m, (maps, sign, time_of_extreme) in enumerate(checks, start=1):
    extreme_N = (sign * np.asarray(maps)).reshape(len(rows), -1).max(1)
    at_got_N = (sign * np.asarray(maps)[n, got[:, m]]).max(1)
    np.testing.assert_allclose(at_got_N, extreme_N, rtol=1e-4, atol=1e-7)
    assert (got[:, m] == time_of_extreme(maps)).mean() > 0.95


def test_pass_rejects_bad_input_with_clear_errors(tiny):
  config, variables = tiny
  batch = _batches(1)[0]
  with pytest.raises(ValueError, match='Unknown alignment method'):
    navai.run_pass(config, variables, [batch], methods=('lrp_min',))
  with pytest.raises(ValueError, match='Unknown fill'):
    navai.run_pass(config, variables, [batch], fill='mirror')
  with pytest.raises(ValueError, match='lacks id, text'):
    navai.run_pass(config, variables, [{k: batch[k] for k in ('audio', 'audio_lengths',
                                                              'weights')}])


def test_timings_are_found_by_utterance_id(tmp_path):
  config = default.get_config('tiny')
  chapter = tmp_path / 'dev' / '7' / '8'
  chapter.mkdir(parents=True)
  for utt in ('7-8-0001', '7-8-0002'):
    (chapter / f'{utt}.timing.json').write_text(json.dumps(
        {'phonemes': [{'phoneme': "'aI", 'start': 0.0, 'end': 0.1},
                      {'phoneme': 'i@3', 'start': 0.1, 'end': 0.2}]}))
  config.data.source = f'folder:{tmp_path}'
  found = navai.find_timings(config)
  assert found == {u: str(chapter / f'{u}.timing.json') for u in ('7-8-0001', '7-8-0002')}
  assert navai.phoneme_inventory(found.values()) == ('aI', 'i@')
  config.data.source = 'tfds:librispeech'
  assert navai.find_timings(config) == {}
  assert navai.find_timings(config, str(tmp_path)) == found
  with pytest.raises(ValueError, match='does not exist'):
    navai.find_timings(config, str(tmp_path / 'nowhere'))
