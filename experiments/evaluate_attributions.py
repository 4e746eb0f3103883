"""Are the maps faithful? Every attribution method scored on a trained run (SPEC §11).

  python experiments/evaluate_attributions.py --workdir=runs/small
  python experiments/evaluate_attributions.py --workdir=runs/small \
      --config.attributions.max_frames=256 --config.attributions.methods="('sensitivity', 'lrp_paper', 'random')"

Takes `max_frames` letter frames of `--config.attributions.split` and scores the maps of every
method (sensitivity of the softmax and of the logit, gradient x input, integrated gradients,
SmoothGrad, guided backprop, Grad-CAM over time, LRP paper/zero/epsilon/zplus/alphabeta, and a
random map) by deletion and insertion curves (AUC, AOPC; bins, time columns, 8x8 patches),
cascading model-parameter randomisation, random logit, max-sensitivity, relevance mass /
pointing game / relevance rank inside the letter's true span (corpora with timing files), Gini
sparseness and utterance-level deletion (LER against the deleted share). Settings are the
`attributions` config section (navai_jax/configs/default.py), overridden as
`--config.attributions.FIELD=VALUE`. Written into `--out_dir` (default WORKDIR/attributions):
attributions.md (the table), attributions.csv, attributions.json (every number, per frame),
attribution_curves.png, attribution_randomisation.png.
"""

import os

from absl import flags

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.stages import evaluate_attributions

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/attributions.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_CONFIG = cli.define_sections('attributions')
_DATA_SOURCE = cli.define_data_source()


def main(argv):
  del argv
  overrides = {**cli.overrides(_CONFIG), **_DATA_SOURCE()}
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                             overrides)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'attributions')
  _, table = evaluate_attributions.run(config, variables, step, out_dir, progress=True)
  print(table)
  print(f'Written to {out_dir}')


if __name__ == '__main__':
  cli.run(main)
