"""Trains Wav2Letter with CTC on the corpus of the config.

  python experiments/train.py --config=navai_jax/configs/default.py:small --workdir=runs/small

Any config field can be overridden, e.g. `--config.train.max_minutes=20`. Running the same
command again resumes from the latest checkpoint in --workdir. The workdir receives
config.json, checkpoints/ and metrics.jsonl (loss, learning rate, audio-seconds per second,
training time, and dev-set LER/WER every config.train.eval_every steps).

Several hosts: start the same command on every host with --multihost; it calls
`jax.distributed.initialize()` first (coordinator from the environment, as on Cloud TPU, or
from --coordinator_address, --num_processes and --process_id), every host reads only its own
rows of each batch, and only process 0 writes logs.
"""


from absl import app
from absl import flags
from navai_jax.stages import cli
from navai_jax.training import train

_CONFIG = cli.define_config_file('navai_jax/configs/default.py:small',
                                 'Config file, with a preset after a colon.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (resumed if it holds a checkpoint).',
                               required=True)
_START_HOSTS = cli.define_multihost()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _START_HOSTS()
  train.train(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)
