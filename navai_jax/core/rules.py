"""One format for a config section's allowed values, and one message for what breaks them.

The rules of a section sit next to the code that reads it, as `RULES = {SECTION: [rule, ...]}`
(`model.RULES` for `config.model`, `data.RULES` for `config.data`, ...; '' is the top level).
A rule is `(field, test, what the field must be)`. `check(config, *tables)` raises one
`ValueError` listing every field out of range, each as `config.SECTION.FIELD must be RULE, got
VALUE`; the scripts turn it into one line. Every stage checks the whole config before it starts
(`stages.common.start`), training checks what it reads (`train.check_config`), and a function
that takes one section (an AM run's `am`) checks that section (`check_section`).
"""

from typing import Any, Callable, Iterable, Mapping, Sequence

import ml_collections

Test = Callable[[Any], bool]
Rule = tuple[str, Test, str]  # field, test, what the field must be
Rules = Mapping[str, Sequence[Rule]]  # section ('' for the top level) -> its rules


def one_of(choices: Iterable[str]) -> tuple[Test, str]:
  choices = tuple(choices)
  return (lambda v: v in choices), f'one of {", ".join(choices)}'


def subset_of(choices: Iterable[str]) -> tuple[Test, str]:
  """A non-empty collection of `choices`."""
  choices = tuple(choices)
  return (lambda v: bool(v) and all(c in choices for c in v),
          f'a non-empty subset of {", ".join(choices)}')


def at_least(n: float) -> tuple[Test, str]:
  return (lambda v: v >= n), f'>= {n}'


POSITIVE = ((lambda v: v > 0), '> 0')
FRACTION = ((lambda v: 0 <= v < 1), 'in [0, 1)')
PROBABILITY = ((lambda v: 0 <= v <= 1), 'in [0, 1]')


def layer_numbers(num_layers: int, allow_none: bool = False) -> tuple[Test, str]:
  """Distinct layer numbers 1..`num_layers` (with `allow_none`, () too)."""
  test = lambda v: ((allow_none or bool(v))
                    and all(isinstance(l, int) and 1 <= l <= num_layers for l in v)
                    and len(set(v)) == len(v))
  return test, f'distinct layer numbers in 1..{num_layers}' + (' (() for none)' if allow_none
                                                                 else '')


def layer_number(num_layers: int) -> tuple[Test, str]:
  return (lambda v: isinstance(v, int) and 1 <= v <= num_layers,
          f'a layer number in 1..{num_layers}')


def _passes(test: Test, value: Any) -> bool:
  try:
    return bool(test(value))
  except TypeError:  # A value of the wrong type ('abc' >= 1).
    return False


def section_problems(section: str, values: ml_collections.ConfigDict,
                     rules: Sequence[Rule]) -> list[str]:
  """`config.SECTION.FIELD must be RULE, got VALUE` for every field of one section out of range."""
  prefix = f'config.{section}.' if section else 'config.'
  return [f'{prefix}{field} must be {wanted}, got {values[field]!r}'
          for field, test, wanted in rules
          if field in values and not _passes(test, values[field])]


def problems(config: ml_collections.ConfigDict, *tables: Rules) -> list[str]:
  """Every field of `config` out of range under the rules of `tables`."""
  found = []
  for table in tables:
    for section, rules in table.items():
      if not section:
        found += section_problems('', config, rules)
      elif section in config:
        found += section_problems(section, config[section], rules)
  return found


def raise_problems(found: Sequence[str]) -> None:
  """The one ValueError of a list of problems (none: nothing)."""
  if found:
    raise ValueError('Invalid config: ' + '; '.join(found) + '.')


def check(config: ml_collections.ConfigDict, *tables: Rules) -> None:
  """Raises ValueError listing every config field out of range under `tables`."""
  raise_problems(problems(config, *tables))


def check_section(section: str, values: ml_collections.ConfigDict, table: Rules) -> None:
  """Raises ValueError listing every field of one section out of range."""
  raise_problems(section_problems(section, values, table[section]))
