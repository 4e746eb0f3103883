"""Config validation: every preset passes, every rule rejects a value outside it, and one error
lists every problem."""

import pytest

from navai_jax.core import rules
from navai_jax.configs import default

# One value outside the allowed range of each field that has a rule.
BAD = {
    'seed': -1, 'model.channels': 0, 'model.wide_channels': 0, 'model.num_middle_layers': 7,
    'model.bn_momentum': 1.0, 'model.bn_epsilon': 0.0, 'model.dropout': 1.0,
    'features.sample_rate': 8000, 'features.window': 0, 'features.hop': 0,
    'features.num_mels': 0, 'features.top_db': 0.0,
    'data.source': 'folder:', 'data.train_split': '', 'data.eval_split': '',
    'data.reader': 'grain', 'data.batch_seconds': 0.0, 'data.max_seconds': -1.0,
    'data.num_buckets': 0,
    'augment.warp': 1.0, 'augment.noise_std': -0.1, 'augment.freq_masks': -1,
    'augment.freq_mask_width': -1, 'augment.time_masks': -1, 'augment.time_mask_width': -1,
    'train.learning_rate': 0.0, 'train.warmup_steps': -1, 'train.weight_decay': -1.0,
    'train.grad_clip': -1.0, 'train.num_steps': 0, 'train.max_minutes': -1.0,
    'train.log_every': 0, 'train.checkpoint_every': 0, 'train.eval_every': -1,
    'train.loss': 'asg', 'train.ctc': 'warp', 'train.ctc_unroll': -1,
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
    'layers.alignment': 'centre', 'layers.baseline': 'weighted', 'layers.min_frames': 0,
    'layers.permutations': -1, 'layers.dendrogram_layers': (13,), 'layers.figure_layer': 0,
    'layers.figure_phonemes': (), 'layers.letters': ('A',), 'layers.top_channels': 0,
    'layers.seed': -1,
}


def _set(config, path, value):
  *sections, field = path.split('.')
  target = config
  for s in sections:
    target = target[s]
  target[field] = value


@pytest.mark.parametrize('preset', default.PRESETS)
def test_every_preset_is_valid(preset):
  assert rules.problems(default.get_config(preset)) == []


def test_every_rule_has_a_bad_value_here():
  ruled = {f'{s}.{f}' if s else f for s, rules in rules.RULES.items() for f, *_ in rules}
  assert ruled == set(BAD)


@pytest.mark.parametrize('path', sorted(BAD))
def test_each_bad_value_is_named(path):
  config = default.get_config('tiny')
  _set(config, path, BAD[path])
  with pytest.raises(ValueError, match=rf'config\.{path} must be .*, got {BAD[path]!r}'
                     .replace('(', r'\(').replace(')', r'\)')):
    rules.check(config)


def test_one_error_lists_every_problem_and_the_cross_field_rule():
  config = default.get_config('small')
  config.data.batch_seconds = -5.0
  config.model.channels = 0
  config.augment.freq_mask_width = 200
  message = str(pytest.raises(ValueError, rules.check, config).value)
  assert message.count('must be') == 2 and message.count('; ') == 2
  assert 'config.data.batch_seconds must be > 0, got -5.0' in message
  assert 'config.model.channels must be >= 1, got 0' in message
  assert 'freq_mask_width=200 exceeds the 128 mel bins' in message
