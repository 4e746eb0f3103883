"""The attribution-evaluation suite on a run: settings are checked, frames get their letter's
true span, and every metric's numbers hold what they claim (curves start at the frame's
probability and end at the baseline's; the network metrics are those of each frame alone)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from navai_jax.introspection import attribution
from navai_jax.faithfulness import metrics
from navai_jax.core import rules
from navai_jax.faithfulness import sampling
from navai_jax.faithfulness import suite
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.speech import phoneme_times
from navai_jax.recognizer import vocab


@pytest.fixture(scope='module')
def run(tmp_path_factory, tiny_variables, write_split):
  root = tmp_path_factory.mktemp('faithfulness')
  rng = np.random.default_rng(0)
  write_split(root / 'corpus', 'dev', ['cat sat', 'a dog', 'bee', 'hello you'], timings=True,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  config, variables = tiny_variables(0, jnp.float32, letter_bias=True)
  config.data.source = f'folder:{root / "corpus"}'
  config.data.reader = 'direct'
  config.attributions.methods = ('lrp_paper', 'random')  # a map's method and the reference
  config.attributions.granularities = ('bin', 'column')  # patches: metrics_test
  # Fewer frames and noise draws than the defaults: every assertion is per frame.
  config.attributions.max_frames = 8
  config.attributions.max_sensitivity_samples = 20
  return root, config, variables


def test_bad_settings_are_named_in_one_message(run):
  _, config, _ = run
  s = config.attributions.copy_and_resolve_references()
  s.methods = ('sensitivty', 'lrp_paper')
  s.metrics = ('deletion', 'faithfulnes')
  s.step = 0.0
  s.max_frames = 0
  with pytest.raises(ValueError) as error:
    rules.check_section('attributions', s, suite.RULES)
  message = str(error.value)
  assert ("config.attributions.methods must be a non-empty subset of sensitivity, "
          "sensitivity_logit,") in message and "got ('sensitivty', 'lrp_paper')" in message
  assert "config.attributions.metrics must be a non-empty subset of deletion," in message
  assert ('config.attributions.step must be a fraction of the units in (0, 1], got 0.0'
          in message)
  assert 'config.attributions.max_frames must be >= 1, got 0' in message


def test_a_frame_gets_the_true_span_of_the_letter_it_spells(run):
  root, config, _ = run
  times = phoneme_times.read_timing(next((root / 'corpus').rglob('1-2-0000.timing.json')))
  # A greedy transcript that spells the reference 'cat sat' at positions 44-50, whose windows
  # (frames 2u - 101 ... 2u + 104) hold the whole utterance.
  tokens = np.full(160, vocab.BLANK)
  letters = {}
  for k, c in enumerate('cat sat'):
    tokens[44 + k] = vocab.TOKENS.index(c)
    if c != ' ':
      letters[44 + k] = k
  masks = sampling._spans(config, tokens, np.array(sorted(letters)), 'cat sat', times)
  assert sorted(masks) == sorted(letters)
  specs = model.layer_specs(config.model)
  for u, mask in masks.items():
    k = letters[u]
    phoneme = times['phonemes'][k - (k > 3)]  # one phoneme per letter, words one after another
    assert phoneme['phoneme'] == 'cat sat'[k]
    columns = np.flatnonzero(mask)
    assert np.all(np.diff(columns) == 1)  # one run of columns
    # 80 ms at a hop of 8 ms: 10 columns, the first the one whose centre is at the start.
    assert len(columns) in (10, 11)
    first_time = features.frame_to_seconds(model.window_start(specs, u) + columns[0], config)
    assert phoneme['start'] <= first_time < phoneme['start'] + 0.008


def test_every_metric_on_a_run(run):
  _, config, variables = run
  result = suite.evaluate_attributions(config, variables)
  n = result['frames']
  assert n == config.attributions.max_frames and len(result['letters']) == n
  found = sampling.collect_frames(config, variables)
  probability = np.asarray(attribution.target_probability(config, variables,
                                                          found.windows_NxWxF, found.targets_N))
  baseline = np.asarray(attribution.target_probability(
      config, variables, np.zeros_like(found.windows_NxWxF), found.targets_N))
  steps = len(result['fractions'])
  for method in config.attributions.methods:
    per_frame = result['per_frame'][method]
    for granularity in config.attributions.granularities:
      for order in ('morf', 'lerf'):
        deletion = per_frame[f'{granularity}/deletion/{order}/curve']
        insertion = per_frame[f'{granularity}/insertion/{order}/curve']
        assert deletion.shape == insertion.shape == (n, steps)
        np.testing.assert_allclose(deletion[:, 0], probability, rtol=1e-5)
        np.testing.assert_allclose(deletion[:, -1], baseline, rtol=1e-5)
        np.testing.assert_allclose(insertion[:, 0], baseline, rtol=1e-5)
        np.testing.assert_allclose(insertion[:, -1], probability, rtol=1e-5)
    assert per_frame['sparseness'].shape == (n,)
    if method != 'random':
      assert per_frame['randomisation'].shape == (n, 13)
      # Each frame's numbers are those of the metric run on that frame alone, with its keys
      # (the suite batches frames, hands the maps it made and runs methods in threads).
      explain = suite.explain_function(method, config.attributions.seed)
      keys = suite.metric_keys(config.attributions.seed, n)
      layers = network.layers_from_variables(config, variables)
      # One frame at a time, each metric compiled whole (op by op it takes three times longer).
      randomisation = jax.jit(lambda x, t, key: metrics.cascading_randomisation(
          explain, layers, x, t, key))
      max_sensitivity = jax.jit(lambda x, t, key: metrics.max_sensitivity(
          functools.partial(explain, layers), x, t, key,
          samples=config.attributions.max_sensitivity_samples,
          radius=config.attributions.max_sensitivity_radius))
      every_class = jax.jit(jax.vmap(lambda x, c: explain(layers, x, c), in_axes=(None, 0)))
      for i in (0, n - 1):
        x, t = jnp.asarray(found.windows_NxWxF[i]), jnp.asarray(found.targets_N[i])
        alone = randomisation(x, t, keys['network'])
        # Rank correlations of 26,368 values: float32 rounding of a batched pass reorders a few
        # near-ties (measured: at most 1.1e-4).
        np.testing.assert_allclose(per_frame['randomisation'][i], alone, atol=1e-3)
        sensitivity = max_sensitivity(x, t, keys['max_sensitivity'][i])
        # The largest change of the map under noise over the map's norm: a difference of two
        # close maps, in which the batched pass's rounding weighs more (measured: at most
        # 1.1e-4, Intel Xeon with AVX-512).
        np.testing.assert_allclose(per_frame['max_sensitivity'][i], sensitivity, rtol=1e-3)
        assert per_frame['max_sensitivity'][i] > 0  # noise moves every map of this network
        # Random logit: SciPy's Spearman correlation with the map of one other class.
        maps = np.asarray(every_class(x, jnp.arange(vocab.SIZE))).reshape(vocab.SIZE, -1)
        own = maps[int(t)]
        others = [scipy.stats.spearmanr(own, m)[0] for c, m in enumerate(maps) if c != int(t)]
        assert np.min(np.abs(np.asarray(others) - per_frame['random_logit'][i])) < 1e-3
    assert result['utterance_deletion'][method].shape == (6,)
  # The random order is one set of curves, the same reference for every method.
  assert sorted(result['random_order']) == [f'{g}/{m}' for g in ('bin', 'column')
                                            for m in ('deletion', 'insertion')]
  # At p = 0 nothing is deleted: every method's LER is the plain decoding's.
  first = {m: v[0] for m, v in result['utterance_deletion'].items()}
  assert len(set(first.values())) == 1
  # This untrained network's letters align to no spoken letter: localisation is skipped, said.
  assert any('localisation skipped' in note for note in result['notes'])
  assert 'localisation/mass' not in result['per_frame']['lrp_paper']
