"""Config rules: every preset passes, every rule rejects a value outside it, and one error lists
every problem, whichever module's section it is in."""

import pytest

from navai_jax.configs import default
from navai_jax.core import rules
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.stages import common
from navai_jax.training import train

# One value outside the allowed range of each field that has a rule.
BAD = {
    'seed': -1, 'model.channels': 0, 'model.wide_channels': 0, 'model.num_middle_layers': 7,
    'model.bn_momentum': 1.0, 'model.bn_epsilon': 0.0, 'model.dropout': 1.0,
    'features.sample_rate': 8000, 'features.window': 0, 'features.hop': 0,
    'features.num_mels': 0, 'features.top_db': 0.0, 'features.normalize': 'per_utterance',
    'features.speech_gate_db': -1.0,
    'data.source': 'folder:', 'data.train_split': '', 'data.eval_split': '',
    'data.reader': 'grain', 'data.batch_seconds': 0.0, 'data.max_seconds': -1.0,
    'data.num_buckets': 0, 'data.sorted_epochs': -1,
    'augment.warp': 1.0, 'augment.noise_std': -0.1, 'augment.freq_masks': -1,
    'augment.freq_mask_width': -1, 'augment.time_masks': -1, 'augment.time_mask_width': -1,
    'augment.speeds': (0.9, 3.0), 'augment.reverb': 1.5, 'augment.rooms': 0,
    'augment.noise_snr_db': (30.0, 10.0), 'data.train_engines': ('mimic',),
    'train.learning_rate': 0.0, 'train.warmup_steps': -1, 'train.weight_decay': -1.0,
    'train.grad_clip': -1.0, 'train.num_steps': 0, 'train.max_minutes': -1.0,
    'train.log_every': 0, 'train.checkpoint_every': 0, 'train.eval_every': -1,
    'train.loss': 'asg', 'train.ctc': 'warp', 'train.ctc_unroll': -1, 'train.init_from': '  ',
    'train.other_languages_weight': -0.5, 'train.engine_adversary': -0.1,
    'train.phoneme_head': -1.0, 'train.phoneme_layer': -1, 'train.phoneme_steps': -1,
    'eval.max_utterances': -1, 'eval.num_examples': -1, 'data.read_threads': -1,
    'data.shard_speakers': 0,
    'am.steps': 0, 'am.learning_rate': 0.0, 'am.l1': -1.0, 'am.l2': -1.0, 'am.tv_time': -1.0,
    'am.tv_freq': -1.0, 'am.jitter': 206, 'am.objective_point': 'relu', 'am.seed': -1,
    'navai.split': '', 'navai.max_utterances': -3, 'navai.methods': ('lrp_min',),
    'navai.fill': 'mirror', 'navai.baseline': 'letters', 'navai.frame_batch': 0,
    'navai.figure_workers': 0,
    'navai.save_every': 0,
    'navai.figure_letters': ('a', 'T'), 'navai.sonify_method': 'lrp_min',
    'navai.sonify_iterations': 0, 'navai.layers': (0, 13), 'navai.layer_alignments': ('centre',),
    'navai.concept_layers': (12,), 'navai.references': 0,
    'atlas.layers': (), 'atlas.channels_per_letter': 0, 'atlas.crops': 0, 'atlas.sounds': -1,
    'atlas.method': 'lrp_min', 'atlas.max_utterances': -1,
    'layer_clusters.alignment': 'centre', 'layer_clusters.baseline': 'weighted',
    'layer_clusters.min_frames': 0, 'layer_clusters.permutations': -1,
    'layer_clusters.dendrogram_layers': (13,), 'layer_clusters.figure_layer': 0,
    'layer_clusters.figure_phonemes': (), 'layer_clusters.letters': ('A',),
    'layer_clusters.top_channels': 0, 'layer_clusters.seed': -1,
    'attributions.split': '', 'attributions.methods': ('sensitivty',),
    'attributions.metrics': (), 'attributions.granularities': ('pixel',),
    'attributions.step': 0.0, 'attributions.baseline': 'mean', 'attributions.max_frames': 0,
    'attributions.max_utterances': -1, 'attributions.patch': 0,
    'attributions.max_sensitivity_samples': 0, 'attributions.max_sensitivity_radius': 0.0,
    'attributions.utterance_fractions': (0.5, 1.0), 'attributions.utterance_count': -1,
    'attributions.frame_batch': 0, 'attributions.seed': -1,
}


def _set(config, path, value):
  *sections, field = path.split('.')
  target = config
  for s in sections:
    target = target[s]
  target[field] = value


@pytest.mark.parametrize('preset', default.PRESETS)
def test_every_preset_is_valid(preset):
  assert rules.problems(default.get_config(preset), *common.RULE_TABLES) == []


def test_every_rule_has_a_bad_value_here():
  ruled = {f'{s}.{f}' if s else f for table in common.RULE_TABLES
           for s, section in table.items() for f, *_ in section}
  assert ruled == set(BAD)


@pytest.mark.parametrize('path', sorted(BAD))
def test_each_bad_value_is_named(path):
  config = default.get_config('tiny')
  _set(config, path, BAD[path])
  with pytest.raises(ValueError, match=rf'config\.{path} must be .*, got {BAD[path]!r}'
                     .replace('(', r'\(').replace(')', r'\)')):
    common.check_config(config)


def test_one_error_lists_every_problem_and_the_cross_field_rule():
  config = default.get_config('small')
  config.data.batch_seconds = -5.0
  config.model.channels = 0
  config.augment.freq_mask_width = 200
  message = str(pytest.raises(ValueError, common.check_config, config).value)
  assert message.count('must be') == 2 and message.count('; ') == 2
  assert 'config.data.batch_seconds must be > 0, got -5.0' in message
  assert 'config.model.channels must be >= 1, got 0' in message
  assert 'freq_mask_width=200 exceeds the 128 mel bins' in message


def test_training_checks_the_sections_it_reads_with_the_same_message():
  config = default.get_config('tiny')
  config.train.num_steps = 0
  config.navai.fill = 'mirror'  # not read by training
  with pytest.raises(ValueError, match=r'^Invalid config: config\.train\.num_steps must be >= 1, '
                     r'got 0\.$'):
    train.check_config(config)


def test_the_features_every_preset_uses_are_the_ones_corpora_are_checked_against():
  for preset in default.PRESETS:
    f = default.get_config(preset).features
    assert (f.sample_rate, f.window, f.hop) == (features.SAMPLE_RATE, features.WINDOW,
                                                features.HOP)


def test_the_model_has_the_layers_its_rules_allow():
  for preset in default.PRESETS:
    assert len(model.layer_specs(default.get_config(preset).model)) == model.NUM_LAYERS
