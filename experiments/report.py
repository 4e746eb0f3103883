"""One page for a whole run: WORKDIR/report/index.html.

  python experiments/report.py --workdir=runs/small

The corpus summary, the training curve, LER/WER per held-out voice, Figures 1-3, Supplement A,
t-maps, phoneme figures, the alignment-quality table and plot, the layer profiles' clustering,
the attribution evaluation and a player for every sonified pattern: every result the run folder
holds, linked where it lies (open the page from the run folder, or copy the folder whole). The
main job writes it as its last stage; run this again after rerunning a stage.
"""

from absl import flags

from navai_jax.stages import cli
from navai_jax.outputs import report

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir.', required=True)
_CORPUS_DIR = flags.DEFINE_string('corpus_dir', None, 'Corpus folder to summarize; default the '
                                  "run's folder: data source.")


def main(argv):
  del argv
  print(f'Written to {report.write(_WORKDIR.value, _CORPUS_DIR.value)}')


if __name__ == '__main__':
  cli.run(main)
