"""LRP: fast == literal for every rule, a brute-force reference for the paper's eqs. 3-4,
LRP-0 == gradient x input, conservation of LRP-epsilon, batch-norm folding, sliced activations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.recognizer import features
from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.recognizer import network
from navai_jax.recognizer import model


def rel_error(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def all_rules(quick, layers, x, targets=(None,), **options):
  """{'rule form target': relevance} for every rule and form, in one compiled function."""
  def run(layers, x):
    inputs, pre = network.forward(layers, x)
    return {f'{rule} {form} {t}': lrp.relevance(layers, inputs, pre, t, rule=rule, form=form,
                                               **options)
            for rule, form, t in itertools.product(lrp.RULES, lrp.FORMS, targets)}
  return quick(run, layers, x)


@pytest.mark.parametrize('batch_norm,bias', list(itertools.product([False, True], repeat=2)))
def test_fast_equals_literal_random_nets(random_layers, quick, batch_norm, bias):
  layers = random_layers(1, batch_norm=batch_norm, bias=bias)
  x = random_layers.input(2)
  r = all_rules(quick, layers, x, targets=(None, 1))
  for rule, target in itertools.product(lrp.RULES, (None, 1)):
    fast, literal = r[f'{rule} fast {target}'], r[f'{rule} literal {target}']
    assert fast.shape == x.shape and float(jnp.max(jnp.abs(literal))) > 0, rule
    assert rel_error(fast, literal) <= 1e-5, (rule, target)


def test_fast_equals_literal_tiny(tiny_variables, quick):
  config, variables = tiny_variables()
  layers = network.layers_from_variables(config, variables)
  assert len(layers) == 12
  x = jax.random.normal(jax.random.key(3), (206, 128), jnp.float64)
  r = all_rules(quick, layers, x, chunk=8)
  for rule in lrp.RULES:
    assert r[f'{rule} fast None'].dtype == jnp.float64
    assert rel_error(r[f'{rule} fast None'], r[f'{rule} literal None']) <= 1e-5, rule


def test_paper_rule_equals_brute_force_loops(random_layers, quick):
  """Eqs. 3-4 with explicit loops over i and j, in NumPy, on a two-layer network."""
  layers = random_layers(4, batch_norm=True, bias=False, net=((3, 2, 3), (2, 1, 2)), bins=2)
  x = np.random.default_rng(5).normal(size=(5, 2))
  inputs, pre = network.forward(layers, jnp.asarray(x))
  r = np.zeros((1, 2))
  r[0, int(np.argmax(network.output(layers, pre)[0]))] = 1.0  # R_out: one-hot of the prediction.
  for layer, a in reversed(list(zip(layers, map(np.asarray, inputs)))):
    w = np.asarray(layer.kernel_KxCxD)
    k, c, d = w.shape
    r_in = np.zeros_like(a)
    for u in range(r.shape[0]):
      for j in range(d):
        z_ij = {(u * layer.stride + kk, ci): a[u * layer.stride + kk, ci] * w[kk, ci, j]
                for kk in range(k) for ci in range(c)}
        z_j = sum(z_ij.values())
        bn_sign = np.sign(np.asarray(network.batch_norm(layer, jnp.full(d, z_j)))[j])
        for i, z in z_ij.items():
          r_in[i] += z / (abs(z_j) + 1e-21) * bn_sign * r[u, j]
    r = r_in / np.abs(r_in).max()
  got = quick(lambda l, x: [lrp.relevance(l, *network.forward(l, x), form=f) for f in lrp.FORMS],
              layers, jnp.asarray(x))
  for g in got:
    np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_paper_rule_scales_every_layer_to_max_abs_one(random_layers, quick):
  layers = random_layers(6, batch_norm=True, bias=True)
  x = random_layers.input(7)

  def run(layers, x):
    inputs, pre = network.forward(layers, x)
    return (lrp.relevance(layers, inputs, pre, return_layers=True)[1],
            lrp.relevance(layers, inputs, pre, normalize=False))

  per_layer, unscaled = quick(run, layers, x)
  assert len(per_layer) == len(layers) + 1
  for r in per_layer:
    assert float(jnp.max(jnp.abs(r))) == pytest.approx(1.0)
  np.testing.assert_allclose(per_layer[0], unscaled / jnp.max(jnp.abs(unscaled)), rtol=1e-12)


def test_lrp0_equals_gradient_times_input(random_layers, quick):
  layers = random_layers(8, batch_norm=False, bias=False)
  x = random_layers.input(9)

  def run(layers, x):
    out = []
    for target in (0, 2):
      logit = lambda x: network.output(layers, network.forward(layers, x)[1])[0, target]
      out.append((x * jax.grad(logit)(x),
                  [lrp.relevance(layers, *network.forward(layers, x), target, rule='zero', form=f)
                   for f in lrp.FORMS]))
    return out

  for expected, got in quick(run, layers, x):
    for g in got:
      np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)


def test_epsilon_conserves_the_score_layer_by_layer(random_layers, quick):
  layers = random_layers(10, batch_norm=False, bias=False)
  x = random_layers.input(11)

  def run(layers, x):
    inputs, pre = network.forward(layers, x)
    return (network.output(layers, pre)[0],
            [lrp.relevance(layers, inputs, pre, rule='epsilon', epsilon=1e-12, form=f,
                           return_layers=True)[1] for f in lrp.FORMS],
            lrp.relevance(layers, inputs, pre, rule='epsilon', epsilon=10.0))

  logits, per_layer_by_form, r_big = quick(run, layers, x)
  score = float(jnp.max(logits))
  for per_layer in per_layer_by_form:
    for r in per_layer:
      assert float(jnp.sum(r)) == pytest.approx(score, rel=1e-8)
  # A large epsilon absorbs relevance: the rule does use it.
  assert abs(float(jnp.sum(r_big))) < 0.9 * abs(score)


def test_alphabeta_splits_positive_and_negative_parts(random_layers, quick):
  """One bias-free output unit: the inputs with z_ij > 0 share alpha R, the others -beta R."""
  layers = random_layers(12, batch_norm=False, bias=False, net=((random_layers.field, 1, 3),))
  x = random_layers.input(13)
  settings = ((1.0, 0.0), (2.0, 1.0), (3.0, 2.0))

  def run(layers, x):
    inputs, pre = network.forward(layers, x)
    return jnp.max(network.output(layers, pre)), {
        (alpha, beta, form): lrp.relevance(layers, inputs, pre,
                                           rule='zplus' if beta == 0 else 'alphabeta',
                                           alpha=alpha, beta=beta, epsilon=0.0, form=form)
        for (alpha, beta), form in itertools.product(settings, lrp.FORMS)}

  logit, maps = quick(run, layers, x)
  assert float(logit) > 0
  for (alpha, beta, _), r in maps.items():
    assert float(jnp.sum(jnp.maximum(r, 0))) == pytest.approx(alpha * float(logit), rel=1e-10)
    assert float(jnp.sum(jnp.minimum(r, 0))) == pytest.approx(-beta * float(logit), rel=1e-10)


def test_sliced_activations_give_the_same_relevance_as_windows(tiny_variables, quick):
  """LRP from the utterances' SAME pass == LRP of each window's own VALID pass."""
  config, variables = tiny_variables(2)
  specs = model.layer_specs(config.model)
  frames_B = jnp.asarray([300, 250])
  x = jax.random.normal(jax.random.key(15), (2, 300, 128), jnp.float64)
  x = jnp.where(jnp.arange(300)[None, :, None] < frames_B[:, None, None], x, 0.0)
  # Frames at both ends of both utterances: the first and last windows inside each.
  utterance_N = jnp.asarray([0, 0, 1, 1])
  last = (frames_B - model.RECEPTIVE_FIELD + 101) // 2
  position_N = jnp.asarray([51, last[0], 51, last[1]])
  start_N = model.window_start(specs, position_N)
  assert np.all(start_N >= 0) and np.all(start_N + 206 <= frames_B[utterance_N])
  assert np.all(start_N[1::2] + 208 > frames_B)
  targets = jnp.asarray([3, 7, 12, 28])

  def run(variables, x):
    layers = network.layers_from_variables(config, variables)
    _, intermediates = model.apply_inference(config, variables, x)
    inputs, pre = frames.window_activations(config, x, intermediates, utterance_N, position_N)
    windows = frames.gather_windows(config, x, utterance_N, position_N)
    out = {}
    for rule, t in itertools.product(('paper', 'epsilon'), (None, targets)):
      per_frame = lambda i, p, t: lrp.relevance(layers, i, p, t, rule=rule)
      per_window = lambda w, t: lrp.relevance(layers, *network.forward(layers, w), t, rule=rule)
      t_axis = None if t is None else 0
      out[rule, t is None] = (
          jax.vmap(per_frame, in_axes=(0, 0, t_axis))(inputs, pre, t),
          jax.vmap(per_window, in_axes=(0, t_axis))(windows, t))
    return out

  for key, (sliced, per_window) in quick(run, variables, x).items():
    assert rel_error(sliced, per_window) <= 1e-9, key


def test_public_functions_agree_with_relevance(tiny_variables, quick):
  """lrp and lrp_frames, jitted as users call them, on the `tiny` model."""
  config, variables = tiny_variables(3)
  x = jax.random.normal(jax.random.key(16), (1, 260, 128), jnp.float64)
  _, intermediates = model.apply_inference(config, variables, x)
  utterance_N, position_N, targets = jnp.asarray([0, 0]), jnp.asarray([51, 60]), np.asarray([5, 9])
  windows = frames.gather_windows(config, x, utterance_N, position_N)
  expected = quick(lambda l, w: jax.vmap(lambda w, t: lrp.relevance(l, *network.forward(l, w), t))(
      w, jnp.asarray(targets)), network.layers_from_variables(config, variables), windows)
  sliced = lrp.lrp_frames(config, variables, x, intermediates, utterance_N, position_N, targets)
  assert rel_error(sliced, expected) <= 1e-9
  relevance, per_layer = lrp.lrp(config, variables, windows[1], int(targets[1]),
                                 return_layers=True)
  assert rel_error(relevance, expected[1]) <= 1e-9
  assert len(per_layer) == 13 and per_layer[-1].shape == (1, 31)


def test_bad_inputs_raise(tiny_variables, random_layers):
  config, variables = tiny_variables()
  x = jnp.zeros((206, 128))
  with pytest.raises(ValueError, match='unknown LRP rule .*valid rules: paper, zero, epsilon'):
    lrp.lrp(config, variables, x, rule='gamma')
  with pytest.raises(ValueError, match='unknown LRP form'):
    lrp.lrp(config, variables, x, form='slow')
  with pytest.raises(ValueError, match=r'shape \[206, 128\].*got \[200, 128\]'):
    lrp.lrp(config, variables, jnp.zeros((200, 128)))
  with pytest.raises(ValueError, match=r'shape \[N, 206, 128\]'):
    lrp.lrp_batch(config, variables, x)
  with pytest.raises(ValueError, match='target classes must lie in'):
    lrp.lrp(config, variables, x, target=31)
  with pytest.raises(ValueError, match='alpha - beta = 1'):
    lrp.lrp(config, variables, x, rule='alphabeta', alpha=1.0, beta=1.0)
  with pytest.raises(ValueError, match='zero rule has no epsilon'):
    lrp.lrp(config, variables, x, rule='zero', epsilon=0.1)
  with pytest.raises(ValueError, match='one output position'):
    layers = random_layers(0, batch_norm=False, bias=False)
    lrp.relevance(layers, *network.forward(layers, jnp.zeros((random_layers.field + 2, random_layers.bins))))


def _paper_rule_float64(layers, x):
  """Eqs. 3-4 with the per-layer max-abs scaling, in NumPy float64 from the forward pass on,
  written apart from the package (its own forward pass, batch norm and loops over positions)."""
  layers = [jax.tree.map(lambda a: np.asarray(a, np.float64), l) for l in layers]
  bn = lambda l, z: z if l.bn is None else (
      (z - l.bn['mean']) / np.sqrt(l.bn['var'] + l.bn_epsilon) * l.bn['scale'] + l.bn['bias'])
  a, inputs, pre = np.asarray(x, np.float64), [], []
  for i, l in enumerate(layers):
    k = l.kernel_KxCxD.shape[0]
    z = np.stack([np.einsum('kc,kcd->d', a[u * l.stride:u * l.stride + k], l.kernel_KxCxD)
                  for u in range((a.shape[0] - k) // l.stride + 1)])
    z = z if l.bias_D is None else z + l.bias_D
    inputs.append(a)
    pre.append(z)
    a = bn(l, z) if i == len(layers) - 1 else np.maximum(bn(l, z), 0)
  r = np.eye(a.shape[1])[np.argmax(a[0])][None]
  for l, a, z in reversed(list(zip(layers, inputs, pre))):
    k = l.kernel_KxCxD.shape[0]
    r_in = np.zeros_like(a)
    for u in range(z.shape[0]):
      z_ij = a[u * l.stride:u * l.stride + k, :, None] * l.kernel_KxCxD
      r_in[u * l.stride:u * l.stride + k] += (
          z_ij / (np.abs(z[u]) + 1e-21) * np.sign(bn(l, z[u]))) @ r[u]
    r = r_in / np.abs(r_in).max()
  return r


def test_paper_rule_in_float32_agrees_with_float64_on_a_trained_model(tones_run, tones, quick):
  # Frames of a trained tiny model: the float32 map against an independent float64 one. The
  # error enters where a conv output is within float32 rounding of zero (eq. 3 divides by it);
  # `ill_conditioned_share` says how much relevance passes there. Measured on this model: at
  # most 1.0e-4 of the map's maximum (shares up to 0.006), correlation > 1 - 4e-9; the bound
  # leaves room for other processors' rounding.
  config = tones.config()
  layers = network.layers_from_variables(config, tones_run[1].variables)
  audio = np.concatenate([tones.tone_audio(t) for t in tones.texts * 2])
  x, _ = features.log_mel(jnp.asarray(audio)[None], jnp.asarray([len(audio)]), config)
  windows = np.stack([np.asarray(x[0, s:s + 206]) for s in range(0, x.shape[1] - 206, 37)])
  assert len(windows) >= 12
  got, share = quick(lambda layers, windows: jax.vmap(lambda w: (
      lrp.relevance(layers, *network.forward(layers, w)),
      lrp.ill_conditioned_share(layers, *network.forward(layers, w))))(windows), layers, windows)
  for n, window in enumerate(windows):
    want = _paper_rule_float64(layers, window)
    assert np.corrcoef(np.asarray(got[n]).ravel(), want.ravel())[0, 1] > 0.9999
    assert rel_error(got[n], want) < 1e-3 + float(np.max(share[n]))


def test_ill_conditioned_units_are_found_where_float32_and_float64_part(random_layers, quick):
  # A network built to have the problem: one unit of layer 2 whose conv output at the first
  # frame is 1e-8 of its terms in float64 and, in float32, exactly zero: its terms as this
  # processor sums them in float32, cancelled by the bias (what float32 rounding does to such a
  # unit, made the same on every processor). Its outgoing weights are 1e-8 as large, so that
  # its relevance stays finite in float64. Float32 and float64 maps part, and the share names
  # that layer; the same network without that unit agrees to 1e-5.
  layers = random_layers(11, batch_norm=True, bias=True)
  x = random_layers.input(12)
  inputs, pre = network.forward(layers, x)
  magnitude = network.conv(jnp.abs(inputs[1]), jnp.abs(layers[1].kernel_KxCxD), 1)
  unit = int(jnp.argmax(jnp.abs(jnp.sum(pre[1], 0))))
  z = pre[1][:, unit] - layers[1].bias_D[unit]
  with_bias = lambda l, b: (l[0], l[1].replace(bias_D=l[1].bias_D.at[unit].set(b)), l[2])
  above = layers[2].replace(kernel_KxCxD=layers[2].kernel_KxCxD.at[:, unit].multiply(1e-8))
  built = with_bias((layers[0], layers[1], above), -z[0] + 1e-8 * magnitude[0, unit])
  to32 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)
  first_z = lambda l, x: network.forward(l, x)[1][1][0, unit]
  built32 = with_bias(to32(built), 0.0)
  built32 = with_bias(built32, -quick(first_z, built32, to32(x)))
  assert float(quick(first_z, built32, to32(x))) == 0
  run = lambda l, x: (lrp.relevance(l, *network.forward(l, x)),
                      lrp.ill_conditioned_share(l, *network.forward(l, x)))
  got32, share = quick(run, to32(layers), to32(x))
  assert rel_error(got32, _paper_rule_float64(layers, x)) < 1e-5
  np.testing.assert_array_equal(share, 0)
  got32, share = quick(run, built32, to32(x))
  assert rel_error(got32, _paper_rule_float64(built, x)) > 0.1
  assert float(share[1]) > 0.5 and float(share[0]) == float(share[2]) == 0


def test_float64_agreement_reports_per_frame(tiny_variables):
  config, variables = tiny_variables(1, jnp.float32)
  layers = network.layers_from_variables(config, variables)
  windows = np.asarray(jax.random.normal(jax.random.key(4), (3, 206, 128)), np.float32)
  found = lrp.float64_agreement(layers, windows, np.asarray([3, 7, 20]))
  assert sorted(found) == ['correlation', 'error', 'ill_conditioned_share']
  assert all(v.shape == (3,) for v in found.values())
  assert np.all(found['error'] < 1e-3) and np.all(found['correlation'] > 0.9999)
  assert np.all((found['ill_conditioned_share'] >= 0) & (found['ill_conditioned_share'] <= 1))

