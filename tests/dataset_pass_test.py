"""The NAvAI pass: equals direct averages of the aligned frames under every method, and of each
window's own LRP channel shares; sharded and resumed equals one device uninterrupted; positions
are the extremes of the attribution maps."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from navai_jax.introspection import alignment
from navai_jax.introspection import attribution
from navai_jax.introspection import concepts
from navai_jax.introspection import dataset_pass
from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.introspection import navai
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.training import parallel


@pytest.fixture(scope='module')
def tiny(tiny_variables):
  """The `tiny` model with batch statistics and an output bias against non-letters."""
  return tiny_variables(0, jnp.float32, letter_bias=True)


# Every pass below uses these settings, so each device count compiles the pass step once.
SETTINGS = navai.Settings(alignment.ALIGNMENTS, fill='recut', frame_batch=8,
                          concept_layers=(2, 9), references=4, conditional_layer=9,
                          conditional_channels=[(y % 8, (y + 3) % 8) for y in range(26)])
PASS = dict(settings=SETTINGS, phoneme_classes=('a', 't'))


def _empty_state(config):
  """The empty state `run_pass` starts SETTINGS from (so a test's own step shares its program)."""
  return navai.empty_pass_state(4, 2, config.features.num_mels, model.layer_specs(config.model),
                                concept_layers=SETTINGS.concept_layers, references=4,
                                conditional_classes=SETTINGS.conditional_classes)


def _aligned_by_hand(config, x_TxF, frames, start, position, fill):
  """The aligned window of SPEC §8.3 by indexing: utterance frame start + p - 103 + t at t;
  'zeros' keeps only what lay inside the frame's own window (the paper's crop)."""
  t = np.arange(alignment.WINDOW)
  source = start + position - alignment.CENTRE + t
  inside = (source >= 0) & (source < frames)
  if fill == 'zeros':
    inside &= (source >= start) & (source < start + alignment.WINDOW)
  return np.where(inside[:, None], x_TxF[np.clip(source, 0, len(x_TxF) - 1)], 0.0)


@pytest.mark.parametrize('fill', ['recut', 'zeros'])
def test_pass_equals_direct_average_of_aligned_frames_under_every_method(
    tiny, timings, noise_batches, fill):
  config, variables = tiny
  batches = noise_batches(2)
  mesh = parallel.make_mesh(jax.devices()[:1])
  settings = dataclasses.replace(SETTINGS, fill=fill)
  result = dataset_pass.run_pass(config, variables, batches, timings=timings, mesh=mesh,
                                 **dict(PASS, settings=settings))
  # The same step run_pass compiles, batch by batch, for the positions it chose.
  step = dataset_pass.make_pass_step(ml_collections.FrozenConfigDict(config), mesh, settings)
  specs = model.layer_specs(config.model)
  aligned_MxN, letter_N, direct, phoneme_frames = [[] for _ in SETTINGS.methods], [], [], {}
  frame_order = []  # (utterance index, position) of the aligned frames
  layers = network.layers_from_variables(config, variables)
  def explain_one(w, t):
    inputs, pre = network.forward(layers, w)
    return lrp.relevance(layers, inputs, pre, t, return_layers=True, rule='paper')[1], inputs

  explain = jax.jit(jax.vmap(explain_one))
  shares, centre_phoneme_N = {l: [] for l in SETTINGS.concept_layers}, []
  scores = {l: [] for l in SETTINGS.concept_layers}  # [N, 2, D, 2]: score and unit per kind
  frame_keys = []  # (utterance index, position, letter) of every frame
  for batch in batches:
    x, frames_B = features.log_mel(jnp.asarray(batch['audio']),
                                   jnp.asarray(batch['audio_lengths']), config)
    x, frames_B = np.asarray(x), np.asarray(frames_B)
    state = dataset_pass.spread_devices(_empty_state(config), mesh)
    _, tokens, positions = step(variables, state, batch['audio'], batch['audio_lengths'],
                                batch['weights'], np.full(x.shape[:2], -1, np.int32),
                                batch['index'])
    tokens, positions = np.asarray(tokens), np.asarray(positions)
    for b, u in zip(*np.nonzero(positions[..., 0] >= 0)):
      start = model.window_start(specs, int(u))
      letter_N.append(tokens[b, u] - vocab.LETTER_IDS[0])
      frame_order.append((int(batch['index'][b]), int(u)))
      for m in range(len(SETTINGS.methods)):
        aligned_MxN[m].append(_aligned_by_hand(config, x[b], frames_B[b], start,
                                               positions[b, u, m], fill))
    keep = batch['weights'] > 0
    found = frames.collect(config, variables, x[keep], frames_B[keep])
    direct.append(found)
    # Each window's own LRP shares of the concept layers' channels.
    per_layer, acts = explain(jnp.asarray(found.windows_NxWxF), jnp.asarray(found.tokens_N))
    for l in SETTINGS.concept_layers:
      r = np.asarray(per_layer[l], np.float64).sum(1)
      shares[l].append(r / np.abs(r).sum(1, keepdims=True))
      a = np.asarray(acts[l], np.float64)
      scores[l].append(np.stack([np.stack([r, np.asarray(per_layer[l]).argmax(1)], -1),
                                 np.stack([a.max(1), a.argmax(1)], -1)], 1))
    frame_keys += list(zip(np.asarray(batch['index'])[keep][found.utterance_N],
                           found.positions_N, found.tokens_N - vocab.LETTER_IDS[0]))
    centre = features.frame_to_seconds(model.window_start(specs, found.positions_N) +
                                       alignment.CENTRE, config)
    timed = np.asarray(batch['id'])[keep][found.utterance_N] == '1-1-000'
    centre_phoneme_N.append(np.where(timed, (centre >= 0.9).astype(int), -1))
    if batch['id'][0] == '1-1-000':
      centre = features.frame_to_seconds(
          model.window_start(specs, found.positions_N[found.utterance_N == 0]) + 103, config)
      phoneme_frames = {0: int((centre < 0.9).sum()), 1: int((centre >= 0.9).sum())}
  letter_N = np.asarray(letter_N)
  windows = np.concatenate([f.windows_NxWxF for f in direct])
  assert result.frames == len(windows) == len(letter_N) > 20
  np.testing.assert_array_equal(result.zero_maps, 0)
  assert result.utterances == 7 and result.batches == 2
  np.testing.assert_array_equal(np.sort(letter_N), np.sort(
      np.concatenate([f.tokens_N for f in direct]) - vocab.LETTER_IDS[0]))
  for m in range(len(SETTINGS.methods)):
    aligned_NxWxF = np.stack(aligned_MxN[m])
    if m == 0:  # 'none' keeps every frame where it is: the aligned frames are the windows.
      np.testing.assert_allclose(aligned_NxWxF.sum(0), windows.sum(0), rtol=1e-4, atol=1e-3)
    for c in range(vocab.NUM_LETTERS):
      assert result.letters.count[m, c] == (letter_N == c).sum()
      if (letter_N == c).any():
        np.testing.assert_allclose(result.letters.mean[m, c],
                                   aligned_NxWxF[letter_N == c].mean(0), rtol=1e-4, atol=1e-4)
  # Phoneme classes: the phoneme sounding at the window centre.
  assert result.phonemes.count[0].tolist() == [phoneme_frames[0], phoneme_frames[1]]
  assert min(phoneme_frames.values()) > 0
  # Concept importance: per letter and per phoneme class at the window centre, each channel's
  # mean share of the frame's LRP relevance, as the windows' own LRP gives it.
  direct_letter_N = np.concatenate([f.tokens_N for f in direct]) - vocab.LETTER_IDS[0]
  centre_phoneme_N = np.concatenate(centre_phoneme_N)
  for i, l in enumerate(SETTINGS.concept_layers):
    share_NxD = np.concatenate(shares[l])
    for sums, class_N in ((result.concept_letters[i], direct_letter_N),
                          (result.concept_phonemes[i], centre_phoneme_N)):
      np.testing.assert_array_equal(sums.count, np.bincount(class_N[class_N >= 0],
                                                            minlength=len(sums.count)))
      for y in np.flatnonzero(sums.count):
        # float32 LRP from the utterance's pass and from the window's own: the paper rule's
        # ill-conditioned units round apart (`lrp_test`; measured here at most 3e-5).
        np.testing.assert_allclose(sums.total[y] / sums.count[y],
                                   share_NxD[class_N == y].mean(0), rtol=1e-3, atol=1e-4)
  # Reference frames: per channel and kind the k frames of the highest score, best first;
  # each names its frame (utterance, position, letter), its score and its peak unit.
  where = {(int(u), int(p)): i for i, (u, p, _) in enumerate(frame_keys)}
  for i, l in enumerate(SETTINGS.concept_layers):
    direct_NxKxDx2, refs = np.concatenate(scores[l]), result.references[i]
    assert refs.score.shape == (2, direct_NxKxDx2.shape[2], SETTINGS.references)
    for kind in range(2):
      for c in range(refs.score.shape[1]):
        got = refs.score[kind, c]
        assert np.isfinite(got).all()  # 4 of the 6 utterances with frames
        assert np.all(np.diff(got) <= 0)
        rows = [where[(int(u), int(p))] for u, p in zip(refs.utterance[kind, c],
                                                       refs.position[kind, c])]
        direct = direct_NxKxDx2[:, kind, c]
        np.testing.assert_allclose(got, direct[rows, 0], rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(refs.letter[kind, c], [frame_keys[r][2] for r in rows])
        # One frame per utterance, its best; every other utterance's frames score lower.
        utterances = [frame_keys[r][0] for r in rows]
        assert len(set(utterances)) == len(utterances)
        for r, u in zip(rows, utterances):
          assert direct[r, 0] >= max(direct[i, 0] for i, key in enumerate(frame_keys)
                                     if key[0] == u) - 1e-4
        others = [direct[i, 0] for i, key in enumerate(frame_keys) if key[0] not in utterances]
        assert not others or got[-1] >= max(others) - 1e-4 * max(1, abs(max(others)))
        if kind == 1:  # the peak unit (activations have exact ties only at 0)
          peak = direct[rows, 1].astype(int)
          assert np.all((refs.unit[kind, c] == peak) | (got == 0))
  # Channel-conditional NAvAI: the frames of letter y whose most relevant layer-9 channel is
  # the s-th of y's row, averaged as the letter's own (class y * 2 + s).
  top = dict(zip([(int(u), int(p)) for u, p, _ in frame_keys],
                 np.concatenate(scores[9])[:, 0, :, 0].argmax(1)))
  table = np.asarray(SETTINGS.conditional_channels)
  slot_N = np.array([list(table[y]).index(top[key]) if top[key] in table[y] else -1
                     for y, key in zip(letter_N, frame_order)])
  class_N = np.where(slot_N >= 0, letter_N * 2 + slot_N, -1)
  assert result.channel_letters.count.shape == (4, 52) and (class_N >= 0).sum() > 5
  for m in range(len(SETTINGS.methods)):
    aligned_NxWxF = np.stack(aligned_MxN[m])
    np.testing.assert_array_equal(result.channel_letters.count[m],
                                  np.bincount(class_N[class_N >= 0], minlength=52))
    for c in np.unique(class_N[class_N >= 0]):
      np.testing.assert_allclose(result.channel_letters.mean[m, c],
                                 aligned_NxWxF[class_N == c].mean(0), rtol=1e-4, atol=1e-4)
  found = concepts.importance(result.concept_letters[0])
  letter = int(np.argmax(found['count']))
  assert found['ranking'][letter, 0] == np.argmax(found['share'][letter])
  assert 1 <= found['effective_channels'][letter] <= found['share'].shape[1]
  # Only the timed utterance is scored; its frames are matched to the one spoken letter or not.
  assert result.timed_utterances == 1
  scored = result.quality['histogram'][0].sum() + result.quality['unmatched'].sum()
  assert scored == sum(phoneme_frames.values())


def _interrupted(batches, after):
  for i, batch in enumerate(batches):
    if i == after:
      raise KeyboardInterrupt('simulated kill')
    yield batch


def test_sharded_resumed_pass_equals_single_device_uninterrupted(tiny, timings, tmp_path,
                                                                noise_batches):
  config, variables = tiny
  batches = noise_batches(3, seed=1)
  layers = (1, 9, 12)  # with layer profiles and concept shares
  # One channel per letter (the conditional moments are as large as the letters' again).
  settings = dataclasses.replace(SETTINGS, layers=layers,
                                 conditional_channels=[(y % 8,) for y in range(26)])
  kw = dict(PASS, settings=settings, save_every=2,
            timings=timings)
  single = dataset_pass.run_pass(config, variables, batches, mesh=parallel.make_mesh(jax.devices()[:1]),
                          **kw)
  mesh = parallel.make_mesh(jax.devices()[:4])
  assert mesh.size == 4
  uninterrupted = dataset_pass.run_pass(config, variables, batches, mesh=mesh, **kw)
  path = str(tmp_path / 'state.npz')
  with pytest.raises(KeyboardInterrupt):
    dataset_pass.run_pass(config, variables, _interrupted(batches, 2), mesh=mesh, state_path=path,
                   **kw)
  with np.load(path) as saved:
    assert int(saved['batches']) == 2
  resumed = dataset_pass.run_pass(config, variables, batches, mesh=mesh, state_path=path, **kw)
  assert resumed.batches == 3 and resumed.utterances == uninterrupted.utterances == 11
  parts = lambda r: jax.tree.leaves((r.letters, r.phonemes, r.layer_letters, r.layer_phonemes,
                                     r.concept_letters, r.concept_phonemes))
  assert len(parts(single)) == 2 * 3 + 2 * 2 * len(layers) + 2 * 2 * 2  # moments, sums, shares
  extra = lambda r: jax.tree.leaves((r.references, r.channel_letters))
  assert len(extra(single)) == 2 * 5 + 3  # references of two layers, conditional moments
  for got, want in zip(parts(resumed) + extra(resumed),
                       parts(uninterrupted) + extra(uninterrupted)):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(single.references, uninterrupted.references):  # the same frames
    np.testing.assert_allclose(got.score, want.score, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.utterance, want.utterance)
  for key in ('histogram', 'unmatched'):
    np.testing.assert_array_equal(resumed.quality[key], single.quality[key])
  for got, want in zip(parts(uninterrupted), parts(single)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
  assert single.frames > 20
  # The alignments moved frames: each differs from no alignment.
  for m in (1, 2, 3):
    assert not np.allclose(single.letters.mean[0], single.letters.mean[m])


def test_a_saved_pass_of_other_weights_or_settings_is_not_resumed(tiny, tiny_variables, timings,
                                                                  tmp_path, capsys,
                                                                  noise_batches):
  """The retrained-model case: a state saved with other weights (same checkpoint step, same
  flags) must not stand in for the new model's pass; nor one of another fill."""
  config, variables = tiny
  _, retrained = tiny_variables(3, jnp.float32, letter_bias=True)
  batches = noise_batches(2, seed=2)
  mesh = parallel.make_mesh(jax.devices()[:1])
  kw = dict(PASS, timings=timings, mesh=mesh, resume_key={'checkpoint_step': 20})
  path = str(tmp_path / 'state.npz')
  dataset_pass.run_pass(config, variables, batches, state_path=path, **kw)
  for other, changes in ((dict(variables=retrained), 'weights'),
                         (dict(variables=retrained,
                               settings=dataclasses.replace(SETTINGS, fill='zeros')), 'fill')):
    args = {**kw, 'variables': variables, **other}
    fresh = dataset_pass.run_pass(config, batches=batches, **args)
    reused = dataset_pass.run_pass(config, batches=batches, state_path=path, **args)
    assert f'other {changes}' in capsys.readouterr().out and reused.batches == 2
    for got, want in zip(reused.letters + reused.phonemes, fresh.letters + fresh.phonemes):
      np.testing.assert_array_equal(got, want)
  original = dataset_pass.run_pass(config, variables, batches, **kw)
  assert not np.array_equal(original.letters.count, fresh.letters.count)  # really other weights


def test_pass_positions_are_the_extremes_of_the_attribution_maps(tiny, noise_batches):
  config, variables = tiny
  batch = noise_batches(1, seed=1)[0]
  mesh = parallel.make_mesh(jax.devices()[:1])
  step = dataset_pass.make_pass_step(ml_collections.FrozenConfigDict(config), mesh, SETTINGS)
  state = dataset_pass.spread_devices(_empty_state(config), mesh)
  num_frames = int(features.num_frames(batch['audio'].shape[1], config.features.window,
                                      config.features.hop))
  _, tokens, positions = step(variables, state, batch['audio'], batch['audio_lengths'],
                              batch['weights'], np.full((4, num_frames), -1, np.int32),
                              batch['index'])
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
  checks = [(sensitivity, -1, alignment.time_of_min), (sensitivity, 1, alignment.time_of_max),
            (relevance, 1, alignment.time_of_max)]
  for m, (maps, sign, time_of_extreme) in enumerate(checks, start=1):
    extreme_N = (sign * np.asarray(maps)).reshape(len(rows), -1).max(1)
    at_got_N = (sign * np.asarray(maps)[n, got[:, m]]).max(1)
    np.testing.assert_allclose(at_got_N, extreme_N, rtol=1e-4, atol=1e-7)
    assert (got[:, m] == time_of_extreme(maps)).mean() > 0.95


def test_frames_whose_map_is_all_zeros_are_counted_and_left_out(tiny, noise_batches):
  # An output layer 10^4 times larger saturates the softmax far beyond float32's range: the
  # sensitivity maps are all zeros and have no extreme to align by (SPEC §5). LRP, which starts
  # from the one-hot output, still has its maps.
  config, variables = tiny
  params = dict(variables['params'])
  params['conv_12'] = jax.tree.map(lambda a: 1e4 * a, params['conv_12'])
  saturated = dict(variables, params=params)
  batches = noise_batches(1, seed=3)
  mesh = parallel.make_mesh(jax.devices()[:1])
  settings = dataclasses.replace(SETTINGS, layers=(12,),
                                 layer_alignments=('none', 'sensitivity_min', 'lrp_max'))
  result = dataset_pass.run_pass(config, saturated, batches, mesh=mesh,
                                 **dict(PASS, settings=settings))
  frames_n = int(result.letters.count[0].sum())
  assert frames_n > 10 and result.frames == frames_n
  np.testing.assert_array_equal(result.zero_maps, [0, frames_n, frames_n, 0])
  np.testing.assert_array_equal(result.letters.count[1:3], 0)
  assert int(result.letters.count[3].sum()) == frames_n
  # The layer alignment carried from sensitivity_min leaves the same frames out.
  np.testing.assert_array_equal(result.layer_letters[0].count.sum(1), [frames_n, 0, frames_n])


def test_pass_rejects_bad_input_with_clear_errors(tiny, noise_batches):
  config, variables = tiny
  batch = noise_batches(1)[0]
  with pytest.raises(ValueError, match='Unknown alignment method'):
    dataset_pass.run_pass(config, variables, [batch], navai.Settings(methods=('lrp_min',)))
  with pytest.raises(ValueError, match='Unknown fill'):
    dataset_pass.run_pass(config, variables, [batch], navai.Settings(fill='mirror'))
  with pytest.raises(ValueError, match=r'concept_layers must be distinct layers 1\.\.11 \(the '
                                       r'last is the output\), got \(12,\)'):
    dataset_pass.run_pass(config, variables, [batch], navai.Settings(concept_layers=(12,)))
  with pytest.raises(ValueError, match='lacks id, text'):
    dataset_pass.run_pass(config, variables, [{k: batch[k] for k in ('audio', 'audio_lengths',
                                                                     'weights')}])
