"""NAvAI over a whole split: Figure 3, Supplement A, t-maps, phoneme classes, alignment
quality in milliseconds and sonified patterns (paper §3.5-3.6, §4.3; SPEC §8, §10).

  python experiments/navai.py --workdir=runs/small --config.navai.split=dev

Every frame predicted as a letter is aligned by each method (`none`, `sensitivity_min`,
`sensitivity_max`, `lrp_max`) and folded into per-letter (and per-phoneme) moments, on all
local devices. Settings are the run's `navai` config section, overridden as
`--config.navai.FIELD=VALUE` (split, max_utterances, methods, fill, frame_batch, save_every,
figure_letters, phonemes, timing_dir, sonify_method, sonify_iterations, concept_layers,
references; see navai_jax/configs/default.py). The pass saves its state to
OUT_DIR/pass_state.npz every `save_every` batches; run the same command again after an
interruption and it resumes with the identical result. Written into `--out_dir` (default
WORKDIR/navai):

* navai_SPLIT.npz: per-letter counts, means, normalized patterns (letter mean - all-letter
  mean) and Welch t-maps per method, the same for phoneme classes, and metadata;
* figure3.png, supplement_a_METHOD.png, tmaps_METHOD.png, phonemes.png,
  supplement_phonemes_METHOD.png;
* quality.csv, quality.md, quality.png: distance of each method's aligned position to the
  true letter (or word) span, from the corpus timings (skipped for corpora without them,
  such as real LibriSpeech);
* sound/letter_X.wav, sound/phoneme_X.wav: Griffin-Lim sonifications of the aligned mean
  frames under `navai.sonify_method`;
* concepts_SPLIT.npz, concepts.md: each channel's mean share of a letter's (and phoneme
  class's) LRP relevance at `navai.concept_layers`, the channels that carry it most, each
  channel's `navai.references` best frames by relevance and by activation (one per utterance),
  and, with phoneme times, its label (experiments/atlas.py draws them).

Several hosts: start the same command on every host with --multihost (and, where
jax.distributed cannot find the cluster itself, --coordinator_address=HOST:PORT
--num_processes=N --process_id=I). Each host folds its own share of the batches on its own
devices into OUT_DIR/pass_state.processIofN.npz (so a killed host resumes its share alone);
the hosts' moments are merged at the end and process 0 writes the results. On one machine:

  for i in 0 1; do python experiments/navai.py --workdir=runs/small --multihost \
      --coordinator_address=localhost:12355 --num_processes=2 --process_id=$i & done; wait
"""

import os

from absl import flags
import jax

from navai_jax.training import checkpoints
from navai_jax.stages import cli
from navai_jax.recognizer import vocab
from navai_jax.stages import navai_split

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/navai.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_CONFIG = cli.define_sections('navai')
_DATA_SOURCE = cli.define_data_source()
_START_HOSTS = cli.define_multihost()


def main(argv):
  del argv
  _START_HOSTS()
  overrides = {**cli.overrides(_CONFIG), **_DATA_SOURCE()}
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value,
                                                             overrides)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'navai')
  result, report = navai_split.run(config, variables, step, out_dir, workdir=_WORKDIR.value,
                                   progress=True)
  if jax.process_index():
    return  # Process 0 reports and writes the merged result.
  split = config.navai.split
  print(f'{result.frames} letter frames of {result.utterances} utterances '
        f'({split}, checkpoint step {step}); per letter under {config.navai.methods[0]}: ' +
        ' '.join(f'{c}:{int(n)}' for c, n in zip(vocab.LETTERS, result.letters.count[0])))
  for method, left_out in zip(dict.fromkeys(config.navai.methods), result.zero_maps):
    if left_out:
      print(f'{int(left_out)} frames left out under {method}: their map is all zeros (a softmax '
            'saturated beyond float32; --config.navai.methods without it keeps them).')
  if report is None:
    print(f'Alignment quality skipped: no .timing.json files for the utterances of '
          f'{config.data.source} (real LibriSpeech has no word or phoneme times; a corpus copy '
          'without them can name the original with --config.navai.timing_dir).')
  else:
    print(f'Alignment quality over {result.timed_utterances} timed utterances:\n{report}')
  print(f'Written to {out_dir}')


if __name__ == '__main__':
  cli.run(main)
