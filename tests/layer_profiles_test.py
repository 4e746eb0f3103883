"""Layer profiles: the pass's per-class means equal a direct mean of aligned layer outputs, built
frame by frame from each window's own VALID pass and autodiff gradients; the receptive-field
arithmetic; the contrastive normalisation; clear errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from navai_jax.introspection import alignment
from navai_jax.introspection import dataset_pass
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import navai
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.speech import phoneme_times
from navai_jax.training import parallel

LAYERS = (1, 2, 9, 10, 12)


@pytest.fixture(scope='module')
def tiny(tiny_variables):
  return tiny_variables(0, jnp.float32, letter_bias=True)


def _layer_outputs_and_gradients(layers, windows_NxWxF, layer, targets_N):
  """Output of `layer` over each window (its own VALID pass) and d softmax_target / d it."""
  def one(window_WxF, target):
    inputs, pre = network.forward(layers, window_WxF)
    if layer == len(layers):
      act = network.output(layers, pre)
      scores = lambda a: jax.nn.softmax(a[0])[target]
    else:
      act = inputs[layer]  # the input of layer + 1 is the output of `layer`
      scores = lambda a: jax.nn.softmax(network.logits(layers[layer:], a))[target]
    return act, jax.grad(scores)(act)
  return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jnp.asarray(windows_NxWxF),
                                                         jnp.asarray(targets_N)))


def _gradient_max_by_loop(gradient_ZxC):
  best, where = -np.inf, -1
  for t in range(gradient_ZxC.shape[0]):
    score = np.mean(np.abs(gradient_ZxC[t]))
    if score > best:
      best, where = score, t
  return where


def _shift_by_hand(act_ZxC, position):
  """Position `position` moved to `L // 2`, zeros shifted in."""
  length = act_ZxC.shape[0]
  out = np.zeros_like(act_ZxC)
  for t in range(length):
    source = t + position - length // 2
    if 0 <= source < length:
      out[t] = act_ZxC[source]
  return out


def test_profiles_equal_the_direct_mean_of_aligned_layer_outputs_under_every_alignment(
    tiny, timings, noise_batches):
  config, variables = tiny
  batches = noise_batches(2)
  mesh = parallel.make_mesh(jax.devices()[:1])
  settings = navai.Settings(alignment.ALIGNMENTS, fill='zeros', frame_batch=8, layers=LAYERS)
  result = dataset_pass.run_pass(config, variables, batches, settings, timings=timings,
                                 phoneme_classes=('a', 't'), mesh=mesh)
  # The step without layers: its positions are the pass's NAvAI positions.
  step = dataset_pass.make_pass_step(ml_collections.FrozenConfigDict(config), mesh,
                                     navai.Settings(alignment.ALIGNMENTS, fill='zeros',
                                                    frame_batch=8))
  specs = model.layer_specs(config.model)
  layers = network.layers_from_variables(config, variables)
  names = layer_profiles.LAYER_ALIGNMENTS
  found = []  # (letter, token, window, NAvAI positions, phoneme track or None)
  for batch in batches:
    x, _ = features.log_mel(jnp.asarray(batch['audio']), jnp.asarray(batch['audio_lengths']),
                            config)
    x = np.asarray(x)
    state = dataset_pass.spread_devices(navai.empty_pass_state(4, 2, config.features.num_mels), mesh)
    _, tokens, positions = step(variables, state, batch['audio'], batch['audio_lengths'],
                                batch['weights'], np.full(x.shape[:2], -1, np.int32),
                                batch['index'])
    tokens, positions = np.asarray(tokens), np.asarray(positions)
    for b, u in zip(*np.nonzero(positions[..., 0] >= 0)):
      start = model.window_start(specs, int(u))
      track = None
      if b == 0 and batch['id'][0] in timings:
        track = phoneme_times.phoneme_track(phoneme_times.read_timing(timings[batch['id'][0]]), ('a', 't'),
                                     x.shape[1], config)[start:start + alignment.WINDOW]
      found.append((tokens[b, u], x[b, start:start + alignment.WINDOW], positions[b, u], track))
  tokens_N = np.array([f[0] for f in found])
  letter_N = tokens_N - vocab.LETTER_IDS[0]
  aligned = {}  # (layer, alignment) -> ([phoneme], [aligned_LxC])
  for l in LAYERS:
    acts, gradients = _layer_outputs_and_gradients(layers, np.stack([f[1] for f in found]), l,
                                                   tokens_N)
    field = model.receptive_field(specs[:l])
    jump = int(np.prod([s.stride for s in specs[:l]]))
    for name in names:
      phonemes, cuts = [], []
      for (_, _, navai_positions, track), act, gradient in zip(found, acts, gradients):
        if name == 'gradient_max':
          position = _gradient_max_by_loop(gradient)
          label = position * jump + (field - 1) // 2
        else:
          label = alignment.CENTRE if name == 'none' else navai_positions[
              alignment.ALIGNMENTS.index(name)]
          position = int(np.clip(np.floor((label - (field - 1) / 2) / jump + 0.5), 0,
                                 act.shape[0] - 1))
        phonemes.append(-1 if track is None else track[label])
        cuts.append(_shift_by_hand(act, position))
      aligned[l, name] = (np.array(phonemes), np.stack(cuts))
  assert len(found) == result.frames > 20
  for i, l in enumerate(LAYERS):
    width = layer_profiles.geometry(specs, l).length
    assert result.layer_letters[i].total.shape == (len(names), vocab.NUM_LETTERS, width,
                                                  specs[l - 1].features)
    for a, name in enumerate(names):
      phoneme_N, x_NxZxC = aligned[l, name]
      for c in range(vocab.NUM_LETTERS):
        assert result.layer_letters[i].count[a, c] == (letter_N == c).sum()
        if (letter_N == c).any():
          np.testing.assert_allclose(result.layer_letters[i].total[a, c],
                                     x_NxZxC[letter_N == c].sum(0), rtol=1e-4, atol=1e-5)
      for c in range(2):
        assert result.layer_phonemes[i].count[a, c] == (phoneme_N == c).sum()
        if (phoneme_N == c).any():
          np.testing.assert_allclose(result.layer_phonemes[i].total[a, c],
                                     x_NxZxC[phoneme_N == c].sum(0), rtol=1e-4, atol=1e-5)
  # The alignments move the layer outputs: each differs from none where a layer has positions.
  for a in range(1, len(names)):
    assert not np.allclose(result.layer_letters[0].total[0], result.layer_letters[0].total[a])
  np.testing.assert_array_equal(result.layer_phonemes[0].count[0], result.phonemes.count[0])


def test_layer_geometry_is_the_receptive_field_arithmetic(tiny):
  config, variables = tiny
  specs = model.layer_specs(config.model)
  layers = network.layers_from_variables(config, variables)
  inputs, _ = network.forward(layers, jnp.zeros((alignment.WINDOW, config.features.num_mels)))
  for l in range(1, len(specs) + 1):
    geom = layer_profiles.geometry(specs, l)
    assert geom.length == (inputs[l].shape[0] if l < len(specs) else 1)
    # Position j sees input frames [j * jump, j * jump + field).
    assert (geom.length - 1) * geom.jump + geom.field == alignment.WINDOW
    # No alignment keeps the centre: input frame 103 lies in the middle position's field.
    assert layer_profiles.position_of_input(geom, jnp.array([alignment.CENTRE]))[0] == (
        geom.length // 2)
    # Carried positions are the nearest centres.
    p = jnp.arange(alignment.WINDOW)
    j = np.asarray(layer_profiles.position_of_input(geom, p))
    centres = np.arange(geom.length) * geom.jump + (geom.field - 1) / 2
    nearest = np.abs(np.asarray(p)[:, None] - centres[None]).min(1)
    np.testing.assert_array_equal(np.abs(np.asarray(p) - centres[j]), nearest)
  assert layer_profiles.geometry(specs, 1) == (80, 2, 48)


def test_contrastive_profiles_subtract_the_mean_over_classes():
  rng = np.random.default_rng(0)
  count = np.array([3.0, 0.0, 1.0, 6.0])
  mean = rng.normal(size=(4, 5, 2))
  m = layer_profiles.Sums(count, mean * count[:, None, None])
  plain = layer_profiles.contrastive_profiles(m)
  weighted = layer_profiles.contrastive_profiles(m, baseline='frames')
  has = count > 0
  np.testing.assert_allclose(plain['contrastive'][has], (mean - mean[has].mean(0))[has],
                             rtol=1e-5, atol=1e-6)
  by_count = (count[has, None, None] * mean[has]).sum(0) / count.sum()
  np.testing.assert_allclose(weighted['contrastive'][has], (mean - by_count)[has], rtol=1e-5,
                             atol=1e-6)
  assert np.isnan(plain['contrastive'][1]).all() and np.isnan(plain['mean'][1]).all()
  with pytest.raises(ValueError, match="Unknown normalization baseline 'letters'"):
    layer_profiles.contrastive_profiles(m, baseline='letters')


def test_bad_layers_and_alignments_are_named(tiny, noise_batches):
  config, variables = tiny
  batch = noise_batches(1)[0]
  run = lambda **kw: dataset_pass.run_pass(config, variables, [batch], navai.Settings(**kw))
  with pytest.raises(ValueError, match=r'Layer numbers must lie in 1\.\.12, got 13'):
    run(layers=(1, 13))
  with pytest.raises(ValueError, match='Unknown layer alignment'):
    run(layers=(1,), layer_alignments=('centre',))
  with pytest.raises(ValueError, match='lrp_max is carried from NAvAI'):
    run(methods=('none',), layers=(1,), layer_alignments=('none', 'lrp_max'))
