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

from navai_jax.stages import cli
from navai_jax.stages import evaluate_attributions

_RUN = cli.define_trained_run('attributions', 'attributions')


def main(argv):
  del argv
  run = _RUN()
  _, table = evaluate_attributions.run(run.config, run.variables, run.step, run.out_dir,
                                       progress=True)
  print(table)
  print(f'Written to {run.out_dir}')


if __name__ == '__main__':
  cli.run(main)
