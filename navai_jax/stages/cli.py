"""How the experiment scripts start: bad input ends in one line that names the problem."""

import os
import sys
from typing import Any, Callable, NamedTuple, Optional

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from navai_jax.configs import default
from navai_jax.training import checkpoints


def _one_line(error: BaseException) -> str:
  """The gist of a flag error: ml_collections quotes its messages and wraps tracebacks."""
  text = str(error.args[0] if error.args else error)
  if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':  # a quoted KeyError message
    text = text[1:-1].replace("\\'", "'").replace('\\n', ' ')
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  if 'Traceback' in text:  # "Error whilst parsing config file: Traceback ... ValueError: why"
    return f'{lines[0]} {lines[-1].split(": ", 1)[-1]}'
  return ' '.join(lines)


def _exit_on_bad_flags(define: Callable[[], flags.FlagHolder]) -> flags.FlagHolder:
  """Runs a config flag's definition, which already parses its overrides from the command
  line, and ends a bad one (a misspelled field, an unknown preset) in one line."""
  try:
    return define()
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    sys.exit(f'{os.path.basename(sys.argv[0])}: bad --config flag: {_one_line(e)}')


def define_config_file(default_path: str, help_text: str) -> flags.FlagHolder:
  """`--config=FILE:PRESET` with `--config.FIELD=VALUE` overrides (as
  `config_flags.DEFINE_config_file`), ending bad ones in one line."""
  return _exit_on_bad_flags(lambda: config_flags.DEFINE_config_file('config', default_path,
                                                                     help_text))


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with the library's input errors turned into one-line exits.

  Flags that do not parse (a misspelled `--config.x.y`, an unknown preset, a value of the
  wrong type) end in one line too, and the libraries' INFO logs (orbax, TFDS) stay quiet
  unless `--verbosity` asks for them.
  """
  script = os.path.basename(sys.argv[0])

  def parse(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:  # absl's own: unknown flags, failed validators, config files.
      sys.exit(f'{script}: {_one_line(e)} (--helpshort lists the flags)')
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # ml_collections' overrides
      sys.exit(f'{script}: bad flag value: {_one_line(e)}')

  def checked(argv: list[str]) -> None:
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    try:
      main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
      sys.exit(f'{script}: {e}')
    except OSError as e:  # a full disk or a folder that became read-only mid-run
      sys.exit(f'{script}: cannot write {e.filename or "an output"}: {e.strerror or e}.')
    except KeyboardInterrupt as e:
      sys.exit(f'{script}: {e or "interrupted."}')

  app.run(checked, flags_parser=parse)


def define_sections(*sections: str) -> flags.FlagHolder:
  """`--config.SECTION.FIELD=VALUE` flags for scripts that work on a trained run.

  The run's own `config.json` holds every section; these flags override fields of the named
  sections on top of it (`overrides`). Every field of the default config parses, so that an
  override of another section ends in `checkpoints.apply_overrides`'s one-line refusal.
  """
  return _exit_on_bad_flags(lambda: config_flags.DEFINE_config_dict(
      'config', default.get_config(),
      f'Overrides of the trained run\'s config, sections {", ".join(sections)}: '
      f'--config.{sections[0]}.FIELD=VALUE.'))


def overrides(holder: flags.FlagHolder) -> dict[str, Any]:
  """The `--config.X.Y=VALUE` values given on the command line, by dotted field name."""
  return dict(config_flags.get_override_values(flags.FLAGS[holder.name]))


def define_multihost() -> Callable[[], None]:
  """Flags `--multihost` (with optional `--coordinator_address`, `--num_processes`,
  `--process_id`); returns the function that starts `jax.distributed` when asked to.

  Without the three optional flags `jax.distributed.initialize()` finds the cluster itself
  (Cloud TPU, SLURM, ...); with them, any set of machines works, one CPU machine included
  (processes on `localhost`). On CPUs the processes talk through gloo.
  """
  multihost = flags.DEFINE_bool('multihost', False, 'Run as one of several processes (hosts) '
                                'through jax.distributed.')
  address = flags.DEFINE_string('coordinator_address', None,
                                'HOST:PORT of process 0 (with --multihost; default: found '
                                'by jax.distributed).')
  count = flags.DEFINE_integer('num_processes', None, 'Number of processes (with --multihost).')
  index = flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes - 1.')

  def start() -> None:
    if not multihost.value:
      if any(f.value is not None for f in (address, count, index)):
        raise ValueError('--coordinator_address, --num_processes and --process_id need '
                         '--multihost.')
      return
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=address.value, num_processes=count.value,
                               process_id=index.value)

  return start


def define_data_source() -> Callable[[], dict[str, Any]]:
  """Flag `--data_source=folder:PATH|tfds:NAME` for scripts on a trained run: read another
  corpus than the one it was trained on. Returns the function that gives its config overrides
  (`checkpoints.load_for_inference`); the source is validated as training's is."""
  source = flags.DEFINE_string('data_source', None, "Another corpus than the run's own: "
                               "'folder:PATH' (LibriSpeech layout) or 'tfds:NAME'.")
  return lambda: {} if source.value is None else {'data.source': source.value}



class TrainedRun(NamedTuple):
  """A trained run as a script on it sees it (`define_trained_run`)."""
  config: Any  # the run's config with the command line's overrides
  variables: Any
  step: int
  workdir: str
  out_dir: str
  navai_dir: Optional[str]  # None: the stage's default (WORKDIR/navai)


def define_trained_run(out_name: str, *sections: str, navai_dir: bool = False
                       ) -> Callable[[], TrainedRun]:
  """The flags of a script on a trained run: `--workdir`, `--out_dir` (default
  WORKDIR/OUT_NAME), `--step`, with `navai_dir` `--navai_dir`, `--config.SECTION.FIELD=VALUE`
  for `sections` and `--data_source`; returns the function that loads the run."""
  workdir = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                                required=True)
  out_dir = flags.DEFINE_string('out_dir', None, f'Output folder; default WORKDIR/{out_name}.')
  navai = (flags.DEFINE_string('navai_dir', None, 'Where the NAvAI pass writes; default '
                               'WORKDIR/navai.') if navai_dir else None)
  step = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  config = define_sections(*sections)
  data_source = define_data_source()

  def load() -> TrainedRun:
    loaded = checkpoints.load_for_inference(workdir.value, step.value,
                                            {**overrides(config), **data_source()})
    return TrainedRun(*loaded, workdir.value,
                      out_dir.value or os.path.join(workdir.value, out_name),
                      navai.value if navai is not None else None)

  return load
