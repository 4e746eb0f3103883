"""NAvAI over a split and everything it writes: the arrays, Figure 3, Supplement A, t-maps,
phoneme figures, the alignment quality in milliseconds, the sonified patterns and the layer
profiles of the same pass (paper §4.3, SPEC §8, §10)."""

import json
import os
import re
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.introspection import alignment_quality
from navai_jax.introspection import channel_labels
from navai_jax.introspection import concepts
from navai_jax.introspection import dataset_pass
from navai_jax.introspection import layer_profiles
from navai_jax.introspection import navai
from navai_jax.introspection import phoneme_clusters
from navai_jax.outputs import drawing
from navai_jax.outputs import figures
from navai_jax.outputs import sonify
from navai_jax.recognizer import features
from navai_jax.recognizer import vocab
from navai_jax.speech import data
from navai_jax.speech import phoneme_times
from navai_jax.stages import common
from navai_jax.training import parallel

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        workdir: str, progress: bool = False, drawn: bool = True
        ) -> tuple[dataset_pass.PassResult, Optional[str]]:
  """NAvAI over `config.navai.split` with the settings of `config.navai`, resumable.

  Writes into `out_dir`: `pass_state.npz` (every `save_every` batches; a rerun resumes from
  it), `navai_SPLIT.npz` (see `navai.result_arrays`, with `mel_hz`, the config and metadata), the
  figures of `write_figures`, `quality.{csv,md,png}` where the corpus has timings, the
  sounds of `write_sounds`, and with `navai.layers` the layer profiles of the same pass,
  `layers_SPLIT.npz` (`layer_profiles.arrays`, with the same metadata); with
  `navai.concept_layers` the channels' shares of each letter's relevance, their reference frames
  and (where the corpus has times) their labels, `concepts_SPLIT.npz` (`concepts.arrays`,
  `concepts.reference_arrays`, `channel_labels.label_arrays`) and `concepts.md`. With `drawn=False`
  no figures and no sounds (for a caller that needs only the arrays; a rerun with `drawn=True`
  finds the finished pass and draws them).

  Returns:
    The pass result, and the markdown alignment-quality report (None without timings).
  """
  common.start(config, out_dir)
  if jax.process_index():  # The first process holds the folder's lock for all hosts.
    return _run(config, variables, step, out_dir, workdir=workdir, progress=progress,
                drawn=drawn)
  with files.locked(out_dir, 'the NAvAI pass'):
    return _run(config, variables, step, out_dir, workdir=workdir, progress=progress,
                drawn=drawn)


def saved_result(config: ml_collections.ConfigDict, variables: PyTree, step: int,
                 navai_dir: str, kind: str, *, workdir: str, wanted: dict[str, Any],
                 usable=lambda saved: True, progress: bool = False
                 ) -> tuple[Optional[dict], Optional[dict]]:
  """`(arrays, meta)` of `NAVAI_DIR/KIND_SPLIT.npz` ('layers', 'concepts') made by this
  checkpoint's pass with `wanted` in its meta (besides the checkpoint, source, split, workdir,
  max_utterances and fill) and `usable(arrays)`; where the file is missing or was made
  otherwise, the pass runs first (`run`, without figures and sounds). `(None, None)` on
  processes other than the first, which does not write it."""
  n = config.navai
  path = os.path.join(navai_dir, f'{kind}_{n.split}.npz')
  wanted = {'checkpoint_step': step, 'source': config.data.source, 'split': n.split,
            'workdir': os.path.abspath(workdir), 'max_utterances': n.max_utterances,
            'fill': n.fill, **wanted}
  if os.path.exists(path):
    with np.load(path) as saved:
      meta = json.loads(str(saved['meta']))
      if all(meta.get(k) == v for k, v in wanted.items()) and usable(saved):
        return dict(saved), meta
    print(f'{path} was made by a pass of other settings; running the NAvAI pass again.')
  run(config, variables, step, navai_dir, workdir=workdir, progress=progress, drawn=False)
  if jax.process_index():
    return None, None
  with np.load(path) as saved:
    return dict(saved), json.loads(str(saved['meta']))


def resume_key(config: ml_collections.ConfigDict, step: int, workdir: str) -> dict[str, Any]:
  """What besides the weights and `navai.Settings` must match for a saved pass to be used."""
  n = config.navai
  return {'checkpoint_step': step, 'source': config.data.source, 'split': n.split,
          'workdir': os.path.abspath(workdir), 'max_utterances': n.max_utterances,
          'frame_batch': n.frame_batch}


def _run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
         workdir: str, progress: bool, drawn: bool
         ) -> tuple[dataset_pass.PassResult, Optional[str]]:
  """`run` inside its output folder's lock."""
  n = config.navai
  settings = navai.Settings.of(n, say=True)
  timings = phoneme_times.find_timings(config, n.timing_dir)
  phoneme_classes = phoneme_times.phoneme_inventory(timings.values()) if timings else ()
  mesh = parallel.make_mesh(jax.local_devices())
  process, processes = jax.process_index(), jax.process_count()

  def batches(start: int):
    return data.batches(config, n.split, train=False, start_step=start,
                        batch_multiple=mesh.size, max_utterances=n.max_utterances,
                        share=(process, processes))

  key = dict(resume_key(config, step, workdir), process=process, processes=processes)
  state_file = 'pass_state.npz' if processes == 1 else (
      f'pass_state.process{process}of{processes}.npz')
  result = dataset_pass.run_pass(config, variables, batches, settings,
                                 phoneme_classes=phoneme_classes, timings=timings,
                                 state_path=os.path.join(out_dir, state_file),
                                 save_every=n.save_every, resume_key=key, mesh=mesh,
                                 progress=progress)
  res = navai.result_arrays(result, settings.methods, phoneme_classes, n.baseline)
  res['about'] = np.str_(f'{n.split} split, {result.frames} letter frames of '
                         f'{result.utterances} utterances')
  meta = dict(key, fill=n.fill, frames=result.frames, utterances=result.utterances,
              timed_utterances=result.timed_utterances, devices=mesh.size * processes,
              layers=list(n.layers), layer_alignments=list(settings.layer_alignments),
              zero_maps=dict(zip(settings.methods, np.asarray(result.zero_maps).tolist())))
  del meta['process']
  if process:  # Every process holds the merged result; the first one writes it.
    return result, None
  common.savez(os.path.join(out_dir, f'navai_{n.split}.npz'), **res,
               mel_hz=features.mel_frequencies(config), config=config.to_json(),
               meta=json.dumps(meta))
  if n.layers:
    common.savez(os.path.join(out_dir, f'layers_{n.split}.npz'), **layer_profiles.arrays(
        result.layer_letters, result.layer_phonemes, n.layers, settings.layer_alignments,
        phoneme_classes), about=res['about'], config=config.to_json(), meta=json.dumps(meta))
  if settings.concept_layers:
    found = concepts.arrays(result.concept_letters, result.concept_phonemes,
                            settings.concept_layers, vocab.LETTERS, phoneme_classes)
    found.update(concepts.reference_arrays(result.references, settings.concept_layers,
                                           data.load_split(config, n.split).ids))
    text = concepts.markdown(found)
    if timings:
      found.update(channel_labels.label_arrays(
          config, found, timings, phoneme_clusters.read_categories(
              config.layer_clusters.categories)))
      text += '\n' + channel_labels.markdown(found, vocab.LETTERS)
    common.savez(os.path.join(out_dir, f'concepts_{n.split}.npz'), **found, about=res['about'],
                 meta=json.dumps(meta))
    files.write_text(os.path.join(out_dir, 'concepts.md'), text)
  # The figures are drawn in other processes while this one writes the rest.
  figures_done = (write_figures(config, res, out_dir, workers=n.figure_workers) if drawn
                  else lambda: None)
  report = None
  try:
    if result.quality is not None:
      rows = alignment_quality.quality_table(result.quality, settings.methods)
      alignment_quality.write_csv(rows, os.path.join(out_dir, 'quality.csv'))
      report = (f'NAvAI over the {res["about"]} ({result.timed_utterances} with true times).'
                '\n\n' + alignment_quality.markdown_report(rows, result.quality,
                                                           settings.methods))
      files.write_text(os.path.join(out_dir, 'quality.md'), report)
      if drawn:
        figures.quality(rows, settings.methods, os.path.join(out_dir, 'quality.png'))
    if drawn:
      write_sounds(config, res, out_dir)
  finally:
    figures_done()
  return result, report


def write_figures(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
                  out_dir: str, workers: int = 1):
  """Figure 3 (+ t-maps), Supplement A and the phoneme figures of a NAvAI result.

  With `workers` > 1 they are drawn in that many processes (`drawing.draw`), and what is
  returned waits for them (call it before reading the files).
  """
  n = config.navai
  jobs = [(figures.figure3, os.path.join(out_dir, 'figure3.png'), tuple(n.figure_letters))]
  for m, method in enumerate(str(m) for m in res['methods']):
    jobs.append((figures.patterns, m, os.path.join(out_dir, f'supplement_a_{method}.png')))
    jobs.append((figures.tmaps, m, os.path.join(out_dir, f'tmaps_{method}.png')))
    if len(res['phoneme_classes']):
      jobs.append((figures.patterns, m,
                   os.path.join(out_dir, f'supplement_phonemes_{method}.png'), 'phoneme', None,
                   8))
  if len(res['phoneme_classes']):
    jobs.append((figures.phonemes, tuple(n.phonemes), os.path.join(out_dir, 'phonemes.png')))
  return drawing.draw(jobs, (config, res), workers)


def file_name(name: str) -> str:
  """A phoneme mnemonic as a file name, distinct even where case is ignored.

  'i:' -> 'i_3a', '@' -> '_40', 'I' -> '_I_' (so that 'I' and 'i' stay apart on macOS).
  """
  return re.sub(r'[^a-z0-9]', lambda m: (f'_{m.group()}_' if m.group().isupper()
                                         else f'_{ord(m.group()):02x}'), name)


def write_sounds(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
                 out_dir: str) -> list[str]:
  """Griffin-Lim sonifications of the mean frames under `config.navai.sonify_method`.

  Returns the paths written (none, with a warning printed, when that method was not run).
  """
  n = config.navai
  methods = [str(m) for m in res['methods']]
  if n.sonify_method not in methods:
    print(f'navai.sonify_method {n.sonify_method} was not run; no sounds.')
    return []
  m = methods.index(n.sonify_method)
  named = [(f'letter_{c}', res['letter_mean'][m, i], res['letter_count'][m, i])
           for i, c in enumerate(vocab.LETTERS)]
  classes = [str(c) for c in res['phoneme_classes']]
  named += [(f'phoneme_{file_name(p)}', res['phoneme_mean'][m, classes.index(p)],
             res['phoneme_count'][m, classes.index(p)]) for p in n.phonemes if p in classes]
  paths = []
  for name, frame, count in named:
    if count:
      audio = sonify.sonify(frame, config, iterations=n.sonify_iterations)
      paths.append(os.path.join(out_dir, 'sound', f'{name}.wav'))
      sonify.write_wav(paths[-1], audio, config.features.sample_rate)
  return paths
