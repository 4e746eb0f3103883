"""NAvAI over a whole split: Figure 3, Supplement A, t-maps, phoneme classes, alignment
quality in milliseconds and sonified patterns (paper §3.5-3.6, §4.3; SPEC §8, §10).

  python experiments/navai.py --workdir=runs/small --split=dev

Every frame predicted as a letter is aligned by each method (`none`, `sensitivity_min`,
`sensitivity_max`, `lrp_max`) and folded into per-letter (and per-phoneme) moments, on all
local devices. The pass saves its state to OUT_DIR/pass_state.npz every `--save_every`
batches; run the same command again after an interruption and it resumes with the identical
result. Written into `--out_dir` (default WORKDIR/navai):

* navai_SPLIT.npz: per-letter counts, means, normalized patterns (letter mean - all-letter
  mean) and Welch t-maps per method, the same for phoneme classes, and metadata;
* figure3.png (+ figure3_tmaps.png), supplement_a_METHOD.png, tmaps_METHOD.png,
  phonemes.png, supplement_phonemes_METHOD.png;
* quality.csv, quality.md, quality.png: distance of each method's aligned position to the
  true letter (or word) span, from the corpus timings (skipped for corpora without them,
  such as real LibriSpeech);
* sound/letter_X.wav, sound/phoneme_X.wav: Griffin-Lim sonifications of the aligned mean
  frames under `--sonify_method`.

Measured with benchmarks/navai_benchmark.py on two shared CPU cores, all four methods: the
`small` config folds 35-55 letter frames per second, the `paper` config about 9 (plus one
compilation per length bucket, ~10-40 s each); 48 dev utterances with the `small` model took
under 3 minutes. `--max_utterances` takes an evenly spaced
subset of the split.
"""

import json
import os
import re

from absl import flags
from absl import logging
import jax
import numpy as np

from navai_jax import alignment_quality
from navai_jax import checkpoints
from navai_jax import cli
from navai_jax import data
from navai_jax import features
from navai_jax import navai
from navai_jax import parallel
from navai_jax import sonify

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (config.json, checkpoints/).',
                               required=True)
_SPLIT = flags.DEFINE_string('split', 'dev', 'Split to average over (dev, train, test, ...).')
_METHODS = flags.DEFINE_multi_enum('methods', list(navai.ALIGNMENTS), navai.ALIGNMENTS,
                                   'Alignment methods (columns of Figure 3).')
_FILL = flags.DEFINE_enum('fill', 'zeros', navai.FILLS,
                          "What shifts in: 'zeros' (the paper) or 'recut' from the utterance.")
_MAX_UTTERANCES = flags.DEFINE_integer('max_utterances', 0,
                                       'Use this many evenly spaced utterances (0 = all).')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder; default WORKDIR/navai.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_FRAME_BATCH = flags.DEFINE_integer('frame_batch', 64, 'Frames per attribution chunk.')
_SAVE_EVERY = flags.DEFINE_integer('save_every', 20, 'Batches between saves of the pass state.')
_FIGURE_LETTERS = flags.DEFINE_list('figure_letters', ['a', 't'], 'Letters of Figure 3.')
_PHONEMES = flags.DEFINE_list('phonemes', ['a', 'aI', 'i:', '@', 'E', 'p', 't', 'k', 'b', 'd',
                                           'g'], 'Phoneme classes (eSpeak) of phonemes.png.')
_TIMING_DIR = flags.DEFINE_string('timing_dir', '', 'Folder with the corpus .timing.json files; '
                                  "default: the config's folder data source.")
_SONIFY_METHOD = flags.DEFINE_enum('sonify_method', 'sensitivity_min', navai.ALIGNMENTS,
                                   'Alignment whose mean frames are sonified.')
_SONIFY_ITERATIONS = flags.DEFINE_integer('sonify_iterations', 200, 'Griffin-Lim iterations.')

flags.register_validator('figure_letters', lambda ls: all(len(l) == 1 and 'a' <= l <= 'z'
                                                          for l in ls),
                         '--figure_letters must be letters a-z.')


def _file_name(name: str) -> str:
  """A phoneme mnemonic as a file name, distinct even where case is ignored.

  'i:' -> 'i_3a', '@' -> '_40', 'I' -> '_I_' (so that 'I' and 'i' stay apart on macOS).
  """
  return re.sub(r'[^a-z0-9]', lambda m: (f'_{m.group()}_' if m.group().isupper()
                                         else f'_{ord(m.group()):02x}'), name)


def write_figures(config, res, out_dir):
  methods = [str(m) for m in res['methods']]
  navai.plot_figure3(config, res, os.path.join(out_dir, 'figure3.png'), _FIGURE_LETTERS.value)
  for m, method in enumerate(methods):
    navai.plot_patterns(config, res, m, os.path.join(out_dir, f'supplement_a_{method}.png'))
    navai.plot_tmaps(config, res, m, os.path.join(out_dir, f'tmaps_{method}.png'))
    if len(res['phoneme_classes']):
      navai.plot_patterns(config, res, m,
                          os.path.join(out_dir, f'supplement_phonemes_{method}.png'),
                          kind='phoneme', cols=8)
  if len(res['phoneme_classes']):
    navai.plot_phonemes(config, res, _PHONEMES.value, os.path.join(out_dir, 'phonemes.png'))


def write_sounds(config, res, out_dir):
  methods = [str(m) for m in res['methods']]
  if _SONIFY_METHOD.value not in methods:
    logging.warning('--sonify_method %s was not run; no sounds.', _SONIFY_METHOD.value)
    return
  m = methods.index(_SONIFY_METHOD.value)
  named = [(f'letter_{c}', res['letter_mean'][m, i], res['letter_count'][m, i])
           for i, c in enumerate(navai.LETTERS)]
  classes = [str(c) for c in res['phoneme_classes']]
  named += [(f'phoneme_{_file_name(p)}', res['phoneme_mean'][m, classes.index(p)],
             res['phoneme_count'][m, classes.index(p)]) for p in _PHONEMES.value if p in classes]
  for name, frame, count in named:
    if count:
      audio = sonify.sonify(frame, config, iterations=_SONIFY_ITERATIONS.value)
      sonify.write_wav(os.path.join(out_dir, 'sound', f'{name}.wav'), audio)


def main(argv):
  del argv
  config, variables, step = checkpoints.load_for_inference(_WORKDIR.value, _STEP.value)
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, 'navai')
  os.makedirs(out_dir, exist_ok=True)
  methods = tuple(dict.fromkeys(_METHODS.value))
  timings = navai.find_timings(config, _TIMING_DIR.value)
  phoneme_classes = navai.phoneme_inventory(timings.values()) if timings else ()
  mesh = parallel.make_mesh(jax.local_devices())
  batches = data.batches(config, _SPLIT.value, train=False, batch_multiple=mesh.size,
                         max_utterances=_MAX_UTTERANCES.value)
  settings = {'checkpoint_step': step, 'split': _SPLIT.value, 'workdir':
              os.path.abspath(_WORKDIR.value), 'max_utterances': _MAX_UTTERANCES.value,
              'frame_batch': _FRAME_BATCH.value}
  result = navai.run_pass(config, variables, batches, methods=methods, fill=_FILL.value,
                          frame_batch=_FRAME_BATCH.value, phoneme_classes=phoneme_classes,
                          timings=timings, state_path=os.path.join(out_dir, 'pass_state.npz'),
                          save_every=_SAVE_EVERY.value, settings=settings, mesh=mesh,
                          progress=True)
  res = navai.results(result, methods, phoneme_classes)
  meta = dict(settings, fill=_FILL.value, frames=result.frames, utterances=result.utterances,
              timed_utterances=result.timed_utterances, devices=mesh.size)
  np.savez(os.path.join(out_dir, f'navai_{_SPLIT.value}.npz'), **res,
           mel_hz=features.mel_frequencies(config), config=config.to_json(),
           meta=json.dumps(meta))
  write_figures(config, res, out_dir)
  print(f'{result.frames} letter frames of {result.utterances} utterances '
        f'({_SPLIT.value}, checkpoint step {step}); per letter under {methods[0]}: ' +
        ' '.join(f'{c}:{n}' for c, n in zip(navai.LETTERS, res['letter_count'][0])))
  if result.quality is None:
    print(f'Alignment quality skipped: no .timing.json files for the utterances of '
          f'{config.data.source} (real LibriSpeech has no word or phoneme times; a corpus copy '
          'without them can name the original with --timing_dir).')
  else:
    rows = alignment_quality.quality_table(result.quality, methods)
    alignment_quality.write_csv(rows, os.path.join(out_dir, 'quality.csv'))
    report = alignment_quality.markdown_report(rows, result.quality, methods)
    with open(os.path.join(out_dir, 'quality.md'), 'w') as f:
      f.write(report)
    alignment_quality.plot_quality(rows, methods, os.path.join(out_dir, 'quality.png'))
    print(f'Alignment quality over {result.timed_utterances} timed utterances:\n{report}')
  write_sounds(config, res, out_dir)
  print(f'Written to {out_dir}')


if __name__ == '__main__':
  cli.run(main)
