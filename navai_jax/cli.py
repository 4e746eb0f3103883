"""How the experiment scripts start: bad input ends in one line that names the problem."""

import os
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from ml_collections import config_flags

from navai_jax.configs import default


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with the library's input errors turned into one-line exits."""

  def checked(argv: list[str]) -> None:
    try:
      main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
      sys.exit(f'{os.path.basename(sys.argv[0])}: {e}')

  app.run(checked)


def define_sections(*sections: str) -> flags.FlagHolder:
  """`--config.SECTION.FIELD=VALUE` flags for scripts that work on a trained run.

  The run's own `config.json` holds every section; these flags override fields of the named
  sections on top of it (`overrides`). Every field of the default config parses, so that an
  override of another section ends in `checkpoints.apply_overrides`'s one-line refusal.
  """
  return config_flags.DEFINE_config_dict(
      'config', default.get_config(),
      f'Overrides of the trained run\'s config, sections {", ".join(sections)}: '
      f'--config.{sections[0]}.FIELD=VALUE.')


def overrides(holder: flags.FlagHolder) -> dict[str, Any]:
  """The `--config.X.Y=VALUE` values given on the command line, by dotted field name."""
  return dict(config_flags.get_override_values(flags.FLAGS[holder.name]))
