"""What every layer listens for: layer profiles (NAPs) and where phonemes form.

  python experiments/layer_clusters.py --workdir=runs/small
  python experiments/layer_clusters.py --workdir=runs/small \
      --config.layer_clusters.alignment=gradient_max --config.layer_clusters.figure_layer=9 \
      --config.layer_clusters.letters="('e', 's')"

The NAvAI pass (experiments/navai.py) folds, besides the aligned inputs, the aligned outputs of
every layer in `navai.layers`, per letter and phoneme class, under each of `navai.layer_alignments`
(`none`, `gradient_max`: the layer's own largest gradient, and NAvAI's input alignments carried to
the layer); it writes them to WORKDIR/navai/layers_SPLIT.npz. This script reads that file (and
runs the pass first where it is missing or was made with other settings; it resumes like
navai.py), then per layer and alignment clusters the phoneme classes' contrastive profiles and
scores the clusters against the phonetic categories (NMI, ARI, permutation baseline). Settings:
the `navai` and `layer_clusters` config sections, as `--config.layer_clusters.FIELD=VALUE`.
Written into `--out_dir` (default WORKDIR/layer_clusters): clustering.md (the table),
clustering.csv, clustering.json, clustering_by_layer.png, dendrogram_layerN.png,
profiles_layerN.png, channels_X_layerN.png.
"""

import os

from absl import flags

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.stages import layer_clusters

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/layer_clusters.')
_NAVAI_DIR = flags.DEFINE_string('navai_dir', None, 'Where the NAvAI pass writes; default '
                                 'WORKDIR/navai.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_CONFIG = cli.define_sections('layer_clusters', 'navai')
_DATA_SOURCE = cli.define_data_source()


def main(argv):
  del argv
  overrides = {**cli.overrides(_CONFIG), **_DATA_SOURCE()}
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                             overrides)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'layer_clusters')
  found = layer_clusters.run(config, variables, step, out_dir, workdir=_WORKDIR.value,
                             navai_dir=_NAVAI_DIR.value, progress=True)
  print(found['markdown'])
  print(f'Written to {out_dir}')


if __name__ == '__main__':
  cli.run(main)
