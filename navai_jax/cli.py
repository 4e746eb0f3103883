"""How the experiment scripts start: bad input ends in one line that names the problem."""

import os
import sys
from typing import Callable

from absl import app


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with the library's input errors turned into one-line exits."""

  def checked(argv: list[str]) -> None:
    try:
      main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
      sys.exit(f'{os.path.basename(sys.argv[0])}: {e}')

  app.run(checked)
