"""How well each layer of a trained run tells apart the engines that voiced its frames.

  python experiments/engine_probe.py --workdir=runs/small
  python experiments/engine_probe.py --workdir=runs/small --layers=layer_1,layer_6,layer_11

A probe per layer (`introspection.engine_probe`) is trained on every 4th frame of the training
split's utterances in the first three quarters of `--batches` training batches and read on
those of the rest. The corpus must name each speaker's engine (SPEAKERS.txt of make_corpus.py);
`--data_source=folder:PATH` reads another one, `--config.data.FIELD=VALUE` sets how.

Voices the probes never saw are then read through them: the speakers of `--unheard_split`
(default 'test', held-out speakers and the held-out engine), by engine, and with
`--human_dir=data/asterisk` the human voice (`make_human_set.py`): which heard engine each layer
takes their frames for. Nothing is trained on them. Writes OUT_DIR/engine_probe.json and
engine_probe.md (default OUT_DIR: WORKDIR/engine_probe) and prints the tables.
"""

import json
import itertools
import os

from absl import flags

from navai_jax.introspection import engine_probe
from navai_jax.recognizer import model
from navai_jax.speech import asterisk
from navai_jax.speech import data
from navai_jax.stages import cli

_RUN = cli.define_trained_run('engine_probe', 'data')
_LAYERS = flags.DEFINE_list('layers', None, "Layers to probe, e.g. layer_1,layer_11; default "
                            'every layer but the output.')
_BATCHES = flags.DEFINE_integer('batches', 120, 'Training batches read (about 40 s of audio '
                                'each); the last quarter holds the frames the probes are read on.',
                                lower_bound=2)
_STEPS = flags.DEFINE_integer('steps', 3000, 'Adam steps of each probe.', lower_bound=1)
_UNHEARD = flags.DEFINE_string('unheard_split', 'test', 'A split of speakers training never '
                               'heard, read through the probes by engine; empty: none.')
_HUMAN = flags.DEFINE_string('human_dir', None, 'The human voice\'s folder (make_human_set.py), '
                             f'split {asterisk.SPLIT!r}, read through the probes.')
_SEED = flags.DEFINE_integer('seed', 0, 'Order of the batches and the probes\' initial weights.',
                             lower_bound=0)


def main(argv):
  del argv
  run = _RUN()
  names = [spec.name for spec in model.layer_specs(run.config.model)[:-1]]
  layers = _LAYERS.value or names
  unknown = [name for name in layers if name not in names]
  if unknown:
    raise ValueError(f'--layers: no hidden layer {", ".join(unknown)}; the hidden layers are '
                     f'{", ".join(names)}.')
  batches = itertools.islice(
      data.batches(run.config, run.config.data.train_split, train=True, seed=_SEED.value),
      _BATCHES.value)
  x, engines, numbers = engine_probe.layer_frames(run.config, run.variables, batches, layers)
  read_on = {}
  if _UNHEARD.value:
    heard = set(engines.tolist())
    unheard, their_engines, _ = engine_probe.layer_frames(
        run.config, run.variables,
        data.batches(run.config, _UNHEARD.value, train=False), layers)
    for engine in sorted(set(their_engines.tolist())):
      kind = 'speakers' if engine in heard else 'engine'
      read_on[f'{data.ENGINE_IDS[engine]} ({_UNHEARD.value}: unheard {kind})'] = {
          name: frames[their_engines == engine] for name, frames in unheard.items()}
  if _HUMAN.value:
    human = run.config.copy_and_resolve_references()
    human.data.source = f'folder:{_HUMAN.value}'
    read_on['the human voice'], _, _ = engine_probe.layer_frames(
        human, run.variables, data.batches(human, asterisk.SPLIT, train=False), layers,
        named_only=False)
  scores = engine_probe.probe_layers(x, engines, numbers, read_on=read_on, steps=_STEPS.value,
                                     seed=_SEED.value)
  table = engine_probe.markdown(scores)
  os.makedirs(run.out_dir, exist_ok=True)
  with open(os.path.join(run.out_dir, 'engine_probe.json'), 'w') as f:
    json.dump({'step': run.step, 'batches': _BATCHES.value, 'steps': _STEPS.value,
               'seed': _SEED.value, 'engines': list(data.ENGINE_IDS), 'layers': scores}, f,
              indent=1)
  with open(os.path.join(run.out_dir, 'engine_probe.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
  print(f'Written to {run.out_dir}')


if __name__ == '__main__':
  cli.run(main)
