"""How far the paper's LRP rule in float32 is from float64 on a trained run's frames.

  python experiments/lrp_precision.py --workdir=runs/small --frames=64

Takes `--frames` letter frames spread over the first batches of `--split` and compares each
float32 map (the fast form) with the float64 literal form (`lrp.float64_agreement`); prints the
distribution of the largest difference (relative to the map's maximum), the lowest correlation,
and how the error goes with the share of relevance that passes through conv outputs within
float32 rounding of zero (`lrp.ill_conditioned_share`).
"""

from absl import flags
import numpy as np
import scipy.stats

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.speech import data
from navai_jax.recognizer import features
from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.recognizer import network

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir.', required=True)
_SPLIT = flags.DEFINE_string('split', 'dev', 'Split whose frames are compared.')
_FRAMES = flags.DEFINE_integer('frames', 64, 'Frames compared.')
_DATA_SOURCE = cli.define_data_source()

flags.register_validator('frames', lambda n: n >= 2, '--frames must be >= 2.')


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, None, _DATA_SOURCE())
  batches = (features.of_batch(b, config)
             for b in data.batches(config, _SPLIT.value, train=False))
  found = frames.collect_some(config, variables, batches, count=4 * _FRAMES.value)
  pick = np.linspace(0, len(found) - 1, min(_FRAMES.value, len(found))).round().astype(int)
  r = lrp.float64_agreement(network.layers_from_variables(config, variables),
                            found.windows_NxWxF[pick], found.tokens_N[pick])
  error, share = r['error'], r['ill_conditioned_share']
  print(f'{len(pick)} frames of {_SPLIT.value}, checkpoint step {step}: float32 against float64, '
        f'largest difference / map maximum: median {np.median(error):.1e}, 90th percentile '
        f'{np.percentile(error, 90):.1e}, max {error.max():.1e}; over 1%: {(error > 0.01).sum()} '
        f'frames; lowest correlation {r["correlation"].min():.6f}')
  print(f'ill-conditioned share: median {np.median(share):.1e}, frames with some '
        f'{(share > 0).sum()}; of the frames over 1%: {[f"{v:.3f}" for v in share[error > 0.01]]}; '
        f'Spearman (error, share) {scipy.stats.spearmanr(error, share)[0]:.2f}')


if __name__ == '__main__':
  cli.run(main)
