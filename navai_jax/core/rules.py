"""Every config field's allowed values, checked in one place.

`check(config)` raises one `ValueError` that lists every field out of range, each as
`config.SECTION.FIELD must be RULE, got VALUE`; the scripts turn it into one line. Training,
evaluation and the introspection scripts check the whole config before they start; functions
that take one section (an AM run's `am`) check that section with `check_section`.
"""

from typing import Any, Callable

import ml_collections

from navai_jax.introspection import alignment
from navai_jax.introspection import layer_profiles
from navai_jax.speech import librispeech
from navai_jax.introspection import moments
from navai_jax.recognizer import vocab

READERS = ('tfds', 'direct')
CTC_IMPLEMENTATIONS = ('forward_backward', 'optax')
OBJECTIVE_POINTS = ('bn', 'act')

_Rule = tuple[str, Callable[[Any], bool], str]


def _one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: v in choices), f'one of {", ".join(choices)}'


def _source_ok(source: Any) -> bool:
  kind, _, arg = str(source).partition(':')
  return kind in ('folder', 'tfds') and bool(arg.strip())


def _letters_ok(letters: Any) -> bool:
  return bool(letters) and all(vocab.is_letter_name(l) for l in letters)


def _methods_ok(methods: Any) -> bool:
  return bool(methods) and all(m in alignment.ALIGNMENTS for m in methods)


NUM_LAYERS = 12  # SPEC §2: layer 1, eight middle layers, the wide layer, the 1x1 layer, output.


def _layers_ok(layers: Any) -> bool:
  return (all(isinstance(l, int) and 1 <= l <= NUM_LAYERS for l in layers)
          and len(set(layers)) == len(layers))


def _layer_alignments_ok(names: Any) -> bool:
  return bool(names) and all(n in layer_profiles.ALIGNMENTS for n in names)


_at_least = lambda n: ((lambda v: v >= n), f'>= {n}')
_positive = ((lambda v: v > 0), '> 0')
_fraction = ((lambda v: 0 <= v < 1), 'in [0, 1)')

RULES: dict[str, list[_Rule]] = {
    '': [('seed', *_at_least(0))],
    'model': [
        ('channels', *_at_least(1)), ('wide_channels', *_at_least(1)),
        ('num_middle_layers', lambda v: v == 8,
         "8 (the paper's layer structure, whose receptive field of 206 frames the "
         'introspection assumes)'),
        ('bn_momentum', *_fraction), ('bn_epsilon', *_positive), ('dropout', *_fraction),
    ],
    'features': [
        ('sample_rate', lambda v: v == librispeech.SAMPLE_RATE,
         f'{librispeech.SAMPLE_RATE} (SPEC §1; corpora are read at that rate)'),
        ('window', *_at_least(1)), ('hop', *_at_least(1)), ('num_mels', *_at_least(1)),
        ('top_db', *_positive),
    ],
    'data': [
        ('source', _source_ok, "'folder:PATH' or 'tfds:NAME'"),
        ('train_split', bool, 'a split name'), ('eval_split', bool, 'a split name'),
        ('reader', *_one_of(READERS)),
        ('batch_seconds', *_positive), ('max_seconds', *_positive),
        ('num_buckets', *_at_least(1)), ('read_threads', *_at_least(0)),
        ('shard_speakers', *_at_least(1)),
    ],
    'augment': [
        ('warp', *_fraction), ('noise_std', *_at_least(0)),
        ('freq_masks', *_at_least(0)), ('freq_mask_width', *_at_least(0)),
        ('time_masks', *_at_least(0)), ('time_mask_width', *_at_least(0)),
    ],
    'train': [
        ('learning_rate', *_positive), ('warmup_steps', *_at_least(0)),
        ('weight_decay', *_at_least(0)),
        ('grad_clip', lambda v: v >= 0, '>= 0 (0 = no clipping)'),
        ('num_steps', *_at_least(1)),
        ('max_minutes', lambda v: v >= 0, '>= 0 (0 = no limit)'),
        ('log_every', *_at_least(1)), ('checkpoint_every', *_at_least(1)),
        ('eval_every', lambda v: v >= 0, '>= 0 (0 = never)'),
        ('loss', lambda v: v == 'ctc', "'ctc' (the only loss)"),
        ('ctc', *_one_of(CTC_IMPLEMENTATIONS)),
        ('ctc_unroll', lambda v: v >= 0, '>= 0 (0 = by platform)'),
    ],
    'eval': [
        ('max_utterances', lambda v: v >= 0, '>= 0 (0 = all)'),
        ('num_examples', *_at_least(0)),
    ],
    'am': [
        ('steps', *_at_least(1)), ('learning_rate', *_positive),
        ('l1', *_at_least(0)), ('l2', *_at_least(0)),
        ('tv_time', *_at_least(0)), ('tv_freq', *_at_least(0)),
        ('jitter', lambda v: 0 <= v < alignment.WINDOW, f'in [0, {alignment.WINDOW}) frames'),
        ('objective_point', *_one_of(OBJECTIVE_POINTS)),
        ('seed', *_at_least(0)),
    ],
    'navai': [
        ('split', bool, 'a split name'),
        ('max_utterances', lambda v: v >= 0, '>= 0 (0 = all)'),
        ('methods', _methods_ok, f'a non-empty subset of {", ".join(alignment.ALIGNMENTS)}'),
        ('fill', *_one_of(alignment.FILLS)),
        ('baseline', *_one_of(moments.BASELINES)),
        ('frame_batch', *_at_least(1)), ('save_every', *_at_least(1)),
        ('figure_workers', *_at_least(1)),
        ('figure_letters', _letters_ok, 'letters a-z'),
        ('sonify_method', *_one_of(alignment.ALIGNMENTS)),
        ('sonify_iterations', *_at_least(1)),
        ('layers', _layers_ok, f'distinct layer numbers in 1..{NUM_LAYERS} (() for none)'),
        ('layer_alignments', _layer_alignments_ok,
         f'a non-empty subset of {", ".join(layer_profiles.ALIGNMENTS)}'),
    ],
    'layers': [
        ('alignment', *_one_of(layer_profiles.ALIGNMENTS)),
        ('baseline', *_one_of(moments.BASELINES)),
        ('min_frames', *_at_least(1)), ('permutations', *_at_least(0)),
        ('dendrogram_layers', _layers_ok, f'distinct layer numbers in 1..{NUM_LAYERS}'),
        ('figure_layer', lambda v: isinstance(v, int) and 1 <= v <= NUM_LAYERS,
         f'a layer number in 1..{NUM_LAYERS}'),
        ('figure_phonemes', bool, 'phoneme classes'),
        ('letters', _letters_ok, 'letters a-z'),
        ('top_channels', *_at_least(1)), ('seed', *_at_least(0)),
    ],
}


def _passes(rule: Callable[[Any], bool], value: Any) -> bool:
  try:
    return bool(rule(value))
  except TypeError:  # A value of the wrong type ('abc' >= 1).
    return False


def section_problems(section: str, values: ml_collections.ConfigDict) -> list[str]:
  """`config.SECTION.FIELD must be RULE, got VALUE` for every field of one section out of range."""
  prefix = f'config.{section}.' if section else 'config.'
  return [f'{prefix}{field} must be {wanted}, got {values[field]!r}'
          for field, rule, wanted in RULES[section]
          if field in values and not _passes(rule, values[field])]


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """Every field of `config` out of range (see `section_problems`), and the cross-field rules."""
  found = section_problems('', config)
  for section in RULES:
    if section and section in config:
      found += section_problems(section, config[section])
  if ('augment' in config and 'features' in config
      and _passes(lambda v: v > config.features.num_mels, config.augment.freq_mask_width)):
    found.append(f'config.augment.freq_mask_width={config.augment.freq_mask_width} exceeds the '
                 f'{config.features.num_mels} mel bins (config.features.num_mels)')
  return found


def check(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError listing every config field out of range."""
  found = problems(config)
  if found:
    raise ValueError('Invalid config: ' + '; '.join(found) + '.')


def check_section(section: str, values: ml_collections.ConfigDict) -> None:
  """Raises ValueError listing every field of one section out of range."""
  found = section_problems(section, values)
  if found:
    raise ValueError('Invalid config: ' + '; '.join(found) + '.')
