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

from navai_jax.stages import cli
from navai_jax.stages import layer_clusters

_RUN = cli.define_trained_run('layer_clusters', 'layer_clusters', 'navai', navai_dir=True)


def main(argv):
  del argv
  run = _RUN()
  found = layer_clusters.run(run.config, run.variables, run.step, run.out_dir,
                             workdir=run.workdir, navai_dir=run.navai_dir, progress=True)
  print(found['markdown'])
  print(f'Written to {run.out_dir}')


if __name__ == '__main__':
  cli.run(main)
