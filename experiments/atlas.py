"""The channel atlas: which channels of a layer carry each letter, and what each one hears.

  python experiments/atlas.py --workdir=runs/small
  python experiments/atlas.py --workdir=runs/small --config.atlas.layers="(4, 8, 11)" \
      --config.atlas.channels_per_letter=5 --config.atlas.crops=6

The NAvAI pass (experiments/navai.py) averages, for every channel of `navai.concept_layers`,
its share of each letter's LRP relevance, keeps its best `navai.references` frames by relevance
and by activation (one per utterance), and, where the corpus has true times, labels the channel
from the phonemes its references point to (WORKDIR/navai/concepts_SPLIT.npz, concepts.md). This
script reads that file (and runs the pass first where it is missing or was made with other
settings), then per layer of `atlas.layers`: runs the channel-conditional NAvAI of each letter's
top channels (resumable, over `atlas.max_utterances` of the split), and draws a card per
channel (its reference frames cropped to the unit's receptive field with the channel's
conditional map, its AM input) and the sounds of its best references. Settings: the `atlas` and
`navai` config sections, as `--config.atlas.FIELD=VALUE`. One process (run navai.py on several
hosts first). Written into `--out_dir` (default WORKDIR/atlas): atlas.md (the index),
patterns_layerL.png, atlas_layerL.npz, cards/layerL_channelC.png, sound/*.wav.
"""

import os

from absl import flags

from navai_jax.stages import atlas
from navai_jax.stages import cli
from navai_jax.training import checkpoints

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/atlas.')
_NAVAI_DIR = flags.DEFINE_string('navai_dir', None, 'Where the NAvAI pass writes; default '
                                 'WORKDIR/navai.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_CONFIG = cli.define_sections('atlas', 'navai')
_DATA_SOURCE = cli.define_data_source()


def main(argv):
  del argv
  overrides = {**cli.overrides(_CONFIG), **_DATA_SOURCE()}
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                             overrides)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'atlas')
  found = atlas.run(config, variables, step, out_dir, workdir=_WORKDIR.value,
                    navai_dir=_NAVAI_DIR.value, progress=True)
  print(found['markdown'])
  print(f'Written to {out_dir}')


if __name__ == '__main__':
  cli.run(main)
