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

from navai_jax.stages import atlas
from navai_jax.stages import cli

_RUN = cli.define_trained_run('atlas', 'atlas', 'navai', navai_dir=True)


def main(argv):
  del argv
  run = _RUN()
  found = atlas.run(run.config, run.variables, run.step, run.out_dir, workdir=run.workdir,
                    navai_dir=run.navai_dir, progress=True)
  print(found['markdown'])
  print(f'Written to {run.out_dir}')


if __name__ == '__main__':
  cli.run(main)
