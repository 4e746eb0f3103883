"""The paper's experiments as library calls: from a trained run to the files they write.

Each function takes a loaded run (`checkpoints.load_for_inference`) and an output folder, does
one experiment end to end and returns what it found; the scripts in `experiments/` are flags
around them, and a notebook calls them the same way.

* `figure2`: sensitivity and LRP of frames predicted as a letter (paper §4.2);
* `figure1`: optimal inputs of the neurons most active on a frame of a letter (§4.1);
* `navai`: the dataset pass, its arrays, Figure 3, Supplement A, t-maps, phoneme figures, the
  alignment quality in milliseconds and the sonified patterns (§4.3, SPEC §8, §10), and the
  layer profiles that the same pass folds (`layer_profiles`);
* `layers`: where phonemes form: the layer profiles clustered against phonetic categories,
  their figures and the channels that carry a letter, with their optimal inputs;
* `explain_audio`: a recording of one's own (any rate, any channels) transcribed, and the
  sensitivity and LRP maps of every letter it is heard to say;
* `evaluate_attributions`: are the maps faithful? Every attribution method scored by
  deletion/insertion, randomisation, robustness, localisation and sparseness (SPEC §11).
"""

import concurrent.futures
import json
import multiprocessing
import os
import re
from typing import Any, Iterator, Optional, Sequence

import jax
import ml_collections
import numpy as np

from navai_jax.introspection import activation_max
from navai_jax.introspection import alignment_quality
from navai_jax.introspection import attribution
from navai_jax.speech import data
from navai_jax.faithfulness import suite
from navai_jax.recognizer import features
from navai_jax.outputs import figures
from navai_jax.core import files
from navai_jax.introspection import frames
from navai_jax.introspection import layer_profiles
from navai_jax.recognizer import model
from navai_jax.introspection import navai as navai_pass
from navai_jax.training import parallel
from navai_jax.introspection import phoneme_clusters
from navai_jax.outputs import recording
from navai_jax.outputs import sonify
from navai_jax.speech import phoneme_times
from navai_jax.core import rules
from navai_jax.recognizer import vocab

PyTree = Any


def _savez(path: str, **arrays) -> None:
  """`np.savez`, written atomically."""
  with files.atomic(path) as tmp, open(tmp, 'wb') as f:
    np.savez(f, **arrays)


def feature_batches(config: ml_collections.ConfigDict, split: str,
                    max_utterances: int = 0) -> Iterator[tuple[jax.Array, jax.Array, list[str]]]:
  """`(x_BxTxF, frames_B, ids)` of the split's real utterances, batch by batch."""
  for batch in data.batches(config, split, train=False, max_utterances=max_utterances):
    yield features.of_batch(batch, config)


def figure2(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
            split: str, letter: str, num_frames: int = 2, utterance: Optional[str] = None,
            lrp_rule: str = 'paper', output: str = 'softmax',
            max_utterances: int = 0) -> dict[str, np.ndarray]:
  """Figure 2: sensitivity (paper eq. 1) and LRP (eqs. 3-4) of frames predicted as `letter`.

  Takes the first frame of the letter in each utterance in data order (all frames of
  `utterance` when it is given) until `num_frames` are found, and writes
  `figure2_LETTER.png` (rows: spectrogram, sensitivity overlay, LRP overlay) and
  `figure2_LETTER.npz` (windows, maps, utterance ids, positions, probabilities) into `out_dir`.
  """
  rules.check(config)
  files.check_writable(out_dir)
  found = frames.find_letter(config, variables, feature_batches(config, split, max_utterances),
                             letter, num_frames, utterance=utterance)
  targets_N = np.full(len(found), vocab.letter_id(letter))
  result = {
      'windows': found.windows_NxWxF,
      'sensitivity': np.asarray(attribution.attribute('sensitivity', config, variables,
                                                      found.windows_NxWxF, targets_N,
                                                      output=output)),
      'lrp': np.asarray(attribution.attribute('lrp', config, variables, found.windows_NxWxF,
                                              targets_N, rule=lrp_rule)),
      'ids': np.asarray(found.ids),
      'positions': found.positions_N,
      'probability': np.asarray(attribution.target_probability(config, variables,
                                                               found.windows_NxWxF, targets_N)),
  }
  os.makedirs(out_dir, exist_ok=True)
  rows = [f"'{letter}' p={p:.3f}, {u} @ {n}"
          for u, n, p in zip(result['ids'], result['positions'], result['probability'])]
  figures.overlay_grid(config, result['windows'],
                       {'sensitivity': result['sensitivity'], f'LRP ({lrp_rule})': result['lrp']},
                       rows, path=os.path.join(out_dir, f'figure2_{letter}.png'))
  _savez(os.path.join(out_dir, f'figure2_{letter}.npz'), **result,
           mel_hz=features.mel_frequencies(config),
           meta=json.dumps({'letter': letter, 'split': split, 'checkpoint_step': step,
                            'lrp_rule': lrp_rule, 'output': output}))
  return result


def figure1(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
            split: str, letter: str, high_layer: int = 11, frame_index: int = 0,
            max_utterances: int = 0) -> tuple[frames.Frames, dict]:
  """Figure 1: AM (settings `config.am`) of the neurons most active on a frame of `letter`.

  Finds the `frame_index`-th frame of the split predicted as `letter` (data order), picks per
  layer the neuron most active on it (paper §4.1), optimizes the input of the neurons of layer
  1, layer 2, `high_layer` and the letter's output neuron, and writes `figure1_LETTER.png` and
  `figure1_LETTER.npz` into `out_dir`.

  Returns:
    The frame, and `{layer: (channel, AMResult)}`.
  """
  rules.check(config)
  files.check_writable(out_dir)
  output_layer = len(model.layer_specs(config.model))
  if not 2 < high_layer < output_layer:
    raise ValueError(f'high_layer must be between 3 and {output_layer - 1}, got {high_layer}.')
  frame = frames.find_letter(config, variables, feature_batches(config, split, max_utterances),
                             letter, 1, skip=frame_index, first_per_utterance=False)
  layers = (1, 2, high_layer, output_layer)
  results = activation_max.optimal_inputs_for_letter(config, variables, frame.windows_NxWxF[0],
                                                     letter, layers, config.am)
  os.makedirs(out_dir, exist_ok=True)
  arrays = {'frame_WxF': frame.windows_NxWxF[0], 'mel_hz': features.mel_frequencies(config)}
  for layer, (channel, result) in results.items():
    arrays[f'layer_{layer}_channel'] = np.asarray(channel)
    for name, value in result._asdict().items():
      arrays[f'layer_{layer}_{name}'] = np.asarray(value)
  _savez(os.path.join(out_dir, f'figure1_{letter}.npz'), **arrays,
           meta=json.dumps({'letter': letter, 'utterance': frame.ids[0],
                            'position': int(frame.positions_N[0]), 'checkpoint_step': step,
                            'am': config.am.to_dict()}))
  figures.figure1(config, results, letter, output_layer,
                  os.path.join(out_dir, f'figure1_{letter}.png'))
  return frame, results


def _file_name(name: str) -> str:
  """A phoneme mnemonic as a file name, distinct even where case is ignored.

  'i:' -> 'i_3a', '@' -> '_40', 'I' -> '_I_' (so that 'I' and 'i' stay apart on macOS).
  """
  return re.sub(r'[^a-z0-9]', lambda m: (f'_{m.group()}_' if m.group().isupper()
                                         else f'_{ord(m.group()):02x}'), name)


# The state of a figure-drawing worker process (`_draw_in_workers`).
_WORKER: dict[str, Any] = {}


def _worker_start(config: ml_collections.ConfigDict, res: dict[str, np.ndarray]) -> None:
  _WORKER.update(config=config, res=res)


def _worker_draw(name: str, *args, **kwargs) -> None:
  getattr(figures, name)(_WORKER['config'], _WORKER['res'], *args, **kwargs)


def _draw_in_workers(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
                     jobs: list[tuple], workers: int):
  """Starts `figures.NAME(config, res, *args)` for each `(NAME, *args)` of `jobs` in `workers`
  processes and returns a function that waits for all of them (and raises their errors).

  Drawing is single-threaded Python (matplotlib), most of a NAvAI result's figure time: with
  two processes the figures take half as long, and the caller computes beside them. The
  processes are spawned (not forked from a process running JAX's threads) and get the config
  and the result once each.
  """
  if workers <= 1:
    for name, *args in jobs:
      getattr(figures, name)(config, res, *args)
    return lambda: None
  pool = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'), initializer=_worker_start,
      initargs=(config, res))
  futures = [pool.submit(_worker_draw, *job) for job in jobs]

  def wait():
    try:
      for future in futures:
        future.result()
    finally:
      pool.shutdown(cancel_futures=True)
  return wait


def write_navai_figures(config: ml_collections.ConfigDict, res: dict[str, np.ndarray],
                        out_dir: str, workers: int = 1):
  """Figure 3 (+ t-maps), Supplement A and the phoneme figures of a NAvAI result.

  With `workers` > 1 they are drawn in that many processes, and what is returned waits for
  them (call it before reading the files).
  """
  n = config.navai
  jobs = [('figure3', os.path.join(out_dir, 'figure3.png'), tuple(n.figure_letters))]
  for m, method in enumerate(str(m) for m in res['methods']):
    jobs.append(('patterns', m, os.path.join(out_dir, f'supplement_a_{method}.png')))
    jobs.append(('tmaps', m, os.path.join(out_dir, f'tmaps_{method}.png')))
    if len(res['phoneme_classes']):
      jobs.append(('patterns', m, os.path.join(out_dir, f'supplement_phonemes_{method}.png'),
                   'phoneme', None, 8))
  if len(res['phoneme_classes']):
    jobs.append(('phonemes', tuple(n.phonemes), os.path.join(out_dir, 'phonemes.png')))
  return _draw_in_workers(config, res, jobs, workers)


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
  named += [(f'phoneme_{_file_name(p)}', res['phoneme_mean'][m, classes.index(p)],
             res['phoneme_count'][m, classes.index(p)]) for p in n.phonemes if p in classes]
  paths = []
  for name, frame, count in named:
    if count:
      audio = sonify.sonify(frame, config, iterations=n.sonify_iterations)
      paths.append(os.path.join(out_dir, 'sound', f'{name}.wav'))
      sonify.write_wav(paths[-1], audio, config.features.sample_rate)
  return paths


def navai(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
          workdir: str, progress: bool = False) -> tuple[navai_pass.PassResult, Optional[str]]:
  """NAvAI over `config.navai.split` with the settings of `config.navai`, resumable.

  Writes into `out_dir`: `pass_state.npz` (every `save_every` batches; a rerun resumes from
  it), `navai_SPLIT.npz` (see `navai.results`, with `mel_hz`, the config and metadata), the
  figures of `write_navai_figures`, `quality.{csv,md,png}` where the corpus has timings, the
  sounds of `write_sounds`, and with `navai.layers` the layer profiles of the same pass,
  `layers_SPLIT.npz` (`layer_profiles.arrays`, with the same metadata).

  Returns:
    The pass result, and the markdown alignment-quality report (None without timings).
  """
  rules.check(config)
  files.check_writable(out_dir)
  if jax.process_index():  # The first process holds the folder's lock for all hosts.
    return _navai(config, variables, step, out_dir, workdir=workdir, progress=progress)
  with files.locked(out_dir, 'the NAvAI pass'):
    return _navai(config, variables, step, out_dir, workdir=workdir, progress=progress)


def _navai(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
           workdir: str, progress: bool) -> tuple[navai_pass.PassResult, Optional[str]]:
  """`navai` inside its output folder's lock."""
  n = config.navai
  methods = tuple(dict.fromkeys(n.methods))
  timings = phoneme_times.find_timings(config, n.timing_dir)
  phoneme_classes = phoneme_times.phoneme_inventory(timings.values()) if timings else ()
  layer_alignments = _layer_alignments(config, say=True)
  mesh = parallel.make_mesh(jax.local_devices())
  process, processes = jax.process_index(), jax.process_count()

  def batches(start: int):
    return data.batches(config, n.split, train=False, start_step=start,
                        batch_multiple=mesh.size, max_utterances=n.max_utterances,
                        share=(process, processes))

  settings = {'checkpoint_step': step, 'source': config.data.source, 'split': n.split,
              'workdir': os.path.abspath(workdir), 'max_utterances': n.max_utterances,
              'frame_batch': n.frame_batch, 'process': process, 'processes': processes}
  state_file = 'pass_state.npz' if processes == 1 else (
      f'pass_state.process{process}of{processes}.npz')
  result = navai_pass.run_pass(config, variables, batches, methods=methods, fill=n.fill,
                               frame_batch=n.frame_batch, layers=tuple(n.layers),
                               layer_alignments=layer_alignments,
                               phoneme_classes=phoneme_classes,
                               timings=timings, state_path=os.path.join(out_dir, state_file),
                               save_every=n.save_every, settings=settings, mesh=mesh,
                               progress=progress)
  res = navai_pass.results(result, methods, phoneme_classes, n.baseline)
  res['about'] = np.str_(f'{n.split} split, {result.frames} letter frames of '
                         f'{result.utterances} utterances')
  meta = dict(settings, fill=n.fill, frames=result.frames, utterances=result.utterances,
              timed_utterances=result.timed_utterances, devices=mesh.size * processes,
              layers=list(n.layers), layer_alignments=list(layer_alignments),
              zero_maps=dict(zip(methods, np.asarray(result.zero_maps).tolist())))
  del meta['process']
  if process:  # Every process holds the merged result; the first one writes it.
    return result, None
  _savez(os.path.join(out_dir, f'navai_{n.split}.npz'), **res,
           mel_hz=features.mel_frequencies(config), config=config.to_json(),
           meta=json.dumps(meta))
  if n.layers:
    _savez(os.path.join(out_dir, f'layers_{n.split}.npz'), **layer_profiles.arrays(
        result.layer_letters, result.layer_phonemes, n.layers, layer_alignments,
        phoneme_classes), about=res['about'], config=config.to_json(), meta=json.dumps(meta))
  # The figures are drawn in other processes while this one writes the rest.
  figures_done = write_navai_figures(config, res, out_dir, workers=n.figure_workers)
  report = None
  try:
    if result.quality is not None:
      rows = alignment_quality.quality_table(result.quality, methods)
      alignment_quality.write_csv(rows, os.path.join(out_dir, 'quality.csv'))
      report = (f'NAvAI over the {res["about"]} ({result.timed_utterances} with true times).'
                '\n\n' + alignment_quality.markdown_report(rows, result.quality, methods))
      files.write_text(os.path.join(out_dir, 'quality.md'), report)
      figures.quality(rows, methods, os.path.join(out_dir, 'quality.png'))
    write_sounds(config, res, out_dir)
  finally:
    figures_done()
  return result, report


def explain_audio(config: ml_collections.ConfigDict, variables: PyTree, step: int, audio: str,
                  out_dir: str, *, letters: Optional[Sequence[str]] = None,
                  frames_per_letter: int = 4, lrp_rule: str = 'paper') -> list[dict[str, Any]]:
  """Transcribes recordings of one's own and explains every letter frame in them.

  `audio` is a file (WAV, FLAC, OGG at any sample rate and channel count) or a directory of
  them, processed file by file. Per recording, into `out_dir/NAME/`: `transcript.txt`,
  `frames.json` (per frame: letter, time, probability, where sensitivity and LRP peak),
  `maps.npz` (windows and both maps of every frame) and per letter `maps_X.png` in Figure 2's
  style (up to `frames_per_letter` frames, evenly spaced through the recording).

  Returns:
    Per recording: {'path', 'notes', 'transcript', 'frames', 'out_dir'}, or {'path', 'error'}
    for a file of a directory that could not be used (a single file raises instead).
  Raises:
    ValueError: a bad single file (unreadable, silent, too short), or a directory without
      audio files.
  """
  rules.check(config)
  files.check_writable(out_dir)
  if frames_per_letter < 1:
    raise ValueError(f'frames_per_letter must be >= 1, got {frames_per_letter}.')
  paths = recording.find_recordings(audio)
  done = []
  for path in paths:
    try:
      samples, notes = recording.read_recording(path, config)
    except ValueError as e:
      if len(paths) == 1 and not os.path.isdir(audio):
        raise
      print(f'Skipped: {e}')
      done.append({'path': path, 'error': str(e)})
      continue
    found = recording.explain(config, variables, samples, letters=letters, lrp_rule=lrp_rule)
    here = os.path.join(out_dir, re.sub(r'[^A-Za-z0-9._-]', '_',
                                        os.path.splitext(os.path.basename(path))[0]))
    os.makedirs(here, exist_ok=True)
    files.write_text(os.path.join(here, 'transcript.txt'), found['transcript'] + '\n')
    per_frame = [{'letter': str(l), 'output_position': int(p), 'seconds': round(float(t), 3),
                  'probability': round(float(q), 4),
                  'sensitivity_max_seconds': round(float(a), 3),
                  'lrp_max_seconds': round(float(b), 3)}
                 for l, p, t, q, a, b in zip(found['letters'], found['positions'],
                                             found['seconds'], found['probability'],
                                             found['sensitivity_max_seconds'],
                                             found['lrp_max_seconds'])]
    files.write_text(os.path.join(here, 'frames.json'), json.dumps(
        {'audio': os.path.abspath(path), 'notes': notes, 'transcript': found['transcript'],
         'checkpoint_step': step, 'lrp_rule': lrp_rule, 'frames': per_frame}, indent=1))
    _savez(os.path.join(here, 'maps.npz'), **{k: v for k, v in found.items()
                                              if k != 'transcript'},
           mel_hz=features.mel_frequencies(config))
    for letter in sorted(set(found['letters'].tolist())):
      index = np.flatnonzero(found['letters'] == letter)
      index = index[np.unique(np.linspace(0, len(index) - 1, frames_per_letter).round()
                              .astype(int))]
      figures.overlay_grid(
          config, found['windows'][index],
          {'sensitivity': found['sensitivity'][index], f'LRP ({lrp_rule})': found['lrp'][index]},
          [f"'{letter}' p={found['probability'][i]:.3f} at {found['seconds'][i]:.2f} s"
           for i in index], path=os.path.join(here, f'maps_{letter}.png'))
    done.append({'path': path, 'notes': notes, 'transcript': found['transcript'],
                 'frames': len(per_frame), 'out_dir': here})
  return done


def _layer_alignments(config: ml_collections.ConfigDict, say: bool = False) -> tuple[str, ...]:
  """`navai.layer_alignments` without those carried from an input alignment the pass does not
  compute (with `say`, the pass says which)."""
  n = config.navai
  names = tuple(a for a in n.layer_alignments
                if a not in layer_profiles.FROM_INPUT or a in n.methods)
  dropped = [a for a in n.layer_alignments if a not in names]
  if say and n.layers and dropped:
    print(f'Layer alignment {", ".join(dropped)} skipped: it is carried from the input '
          f'alignment of the same name, which navai.methods ({", ".join(n.methods)}) lacks.')
  return names


def _profiles_of_run(config: ml_collections.ConfigDict, variables: PyTree, step: int,
                     workdir: str, navai_dir: str, names: tuple[str, ...], progress: bool):
  """The `layers_SPLIT.npz` of this checkpoint, split and settings, made by the NAvAI pass
  (`navai`, run here if it is missing or was made otherwise); returns the loaded file."""
  n = config.navai
  path = os.path.join(navai_dir, f'layers_{n.split}.npz')
  wanted = {'checkpoint_step': step, 'source': config.data.source, 'split': n.split,
            'workdir': os.path.abspath(workdir), 'max_utterances': n.max_utterances,
            'fill': n.fill, 'layers': list(n.layers),
            'layer_alignments': list(names)}
  if os.path.exists(path):
    with np.load(path) as saved:
      meta = json.loads(str(saved['meta']))
      if all(meta.get(k) == v for k, v in wanted.items()):
        return dict(saved), meta
    print(f'{path} was made by a pass of other settings; running the NAvAI pass again.')
  navai(config, variables, step, navai_dir, workdir=workdir, progress=progress)
  if jax.process_index():
    return None, None
  with np.load(path) as saved:
    return dict(saved), json.loads(str(saved['meta']))


def layers(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
           workdir: str, navai_dir: Optional[str] = None, progress: bool = False
           ) -> Optional[dict[str, Any]]:
  """Where phonemes form: the layer profiles of the NAvAI pass, clustered per layer.

  Reads `NAVAI_DIR/layers_SPLIT.npz` (the profiles that `navai` folds in its pass; the pass
  runs first where they are missing or were made with other settings). For every profiled
  layer and alignment, the contrastive profiles of the phoneme classes with at least
  `layers.min_frames` frames are clustered and scored against their phonetic categories
  (`phoneme_clusters.score`). Writes into `out_dir`: `clustering.{csv,json,md}`,
  `clustering_by_layer.png`, `dendrogram_layerN.png` (`layers.dendrogram_layers`),
  `profiles_layerN.png` (`layers.figure_layer`, `layers.figure_phonemes`), and per letter of
  `layers.letters` `channels_X_layerN.png`: its `layers.top_channels` channels furthest above
  the mean over letters, with their activation maximisation inputs (`am` section).

  Returns:
    {'rows': one dict per layer and alignment, 'markdown': the report} (None on processes > 0).
  """
  rules.check(config)
  files.check_writable(out_dir)
  s = config.layers
  if not config.navai.layers:
    raise ValueError('config.navai.layers is empty: the NAvAI pass profiles no layer.')
  missing = sorted({*s.dendrogram_layers, s.figure_layer} - set(config.navai.layers))
  if missing:
    raise ValueError(f'Layer(s) {", ".join(map(str, missing))} of config.layers are not '
                     f'profiled (config.navai.layers: {", ".join(map(str, config.navai.layers))}).')
  names = _layer_alignments(config)
  if s.alignment not in names:
    raise ValueError(f'config.layers.alignment={s.alignment!r} is not among the profiled layer '
                     f'alignments ({", ".join(names)}).')
  categories = phoneme_clusters.read_categories(s.categories)
  data.load_split(config, config.navai.split)  # A split without usable audio says so first.
  if not phoneme_times.find_timings(config, config.navai.timing_dir):
    raise ValueError(f'Clustering phonemes needs phoneme times, and the utterances of '
                     f'{config.data.source} have no .timing.json files (real LibriSpeech has '
                     'none); point --config.navai.timing_dir at a copy that has them.')
  saved, meta = _profiles_of_run(config, variables, step, workdir,
                                 navai_dir or os.path.join(workdir, 'navai'), names, progress)
  if saved is None:
    return None
  classes = [str(c) for c in saved['phoneme_classes']]
  profiles = layer_profiles.read(saved)
  os.makedirs(out_dir, exist_ok=True)
  rows, kept = [], {}
  for layer in config.navai.layers:
    sums = profiles[layer]['phoneme']
    for a, name in enumerate(names):
      count_Y = sums.count[a]
      frequent = [y for y in range(len(classes)) if count_Y[y] >= s.min_frames]
      phoneme_clusters.check_categories([classes[y] for y in frequent], categories)
      keep = [y for y in frequent if categories[classes[y]] is not None]
      if len({categories[classes[y]] for y in keep}) < 2:
        continue
      c = layer_profiles.contrastive(layer_profiles.Sums(count_Y[keep], sums.total[a][keep]),
                                     s.baseline)['contrastive']
      found = phoneme_clusters.score(c.reshape(len(keep), -1),
                                     [categories[classes[y]] for y in keep],
                                     permutations=s.permutations, seed=s.seed)
      kept[layer, name] = (keep, c, found)
      rows.append({'layer': layer, 'alignment': name, 'classes': len(keep),
                   'frames': int(count_Y[keep].sum()),
                   **{k: round(v, 4) for k, v in found.items()
                      if k not in ('clusters', 'linkage')}})
  if not rows:
    raise ValueError(f'No layer has phoneme classes of two categories with at least '
                     f'{s.min_frames} frames each (config.layers.min_frames); average more '
                     'utterances (config.navai.max_utterances).')
  with files.atomic(os.path.join(out_dir, 'clustering.csv')) as tmp, open(tmp, 'w') as f:
    f.write(','.join(rows[0]) + '\n')
    f.writelines(','.join(str(v) for v in r.values()) + '\n' for r in rows)
  clusters = {f'layer{l}/{n}': {classes[y]: int(k) for y, k in zip(keep, found['clusters'])}
              for (l, n), (keep, _, found) in kept.items()}
  files.write_text(os.path.join(out_dir, 'clustering.json'), json.dumps(
      {'rows': rows, 'clusters': clusters, 'about': str(saved['about']),
       'categories': {c: categories[c] for c in classes if c in categories},
       'settings': s.to_dict()}, indent=1, default=list))
  figures.cluster_scores(rows, names, os.path.join(out_dir, 'clustering_by_layer.png'))
  for layer in s.dendrogram_layers:
    if (layer, s.alignment) in kept:
      keep, _, found = kept[layer, s.alignment]
      figures.dendrogram(found['linkage'], [classes[y] for y in keep],
                         [categories[classes[y]] for y in keep],
                         f'Layer {layer} ({s.alignment}): NMI {found["nmi"]:.2f}, '
                         f'ARI {found["ari"]:.2f}',
                         os.path.join(out_dir, f'dendrogram_layer{layer}.png'))
  layer = s.figure_layer
  if (layer, s.alignment) in kept:
    keep, c, _ = kept[layer, s.alignment]
    shown = [i for i, y in enumerate(keep) if classes[y] in s.figure_phonemes]
    if shown:
      figures.layer_profiles(c[shown], [classes[keep[i]] for i in shown],
                             phoneme_clusters.channel_order(c),
                             f'Phoneme profiles of layer {layer} ({s.alignment}), '
                             f'{saved["about"]}',
                             os.path.join(out_dir, f'profiles_layer{layer}.png'))
  a = names.index(s.alignment)
  letters = layer_profiles.contrastive(layer_profiles.Sums(
      profiles[layer]['letter'].count[a], profiles[layer]['letter'].total[a]), s.baseline)
  for letter in s.letters:
    i = vocab.LETTERS.index(letter)
    if not letters['count'][i]:
      print(f'No frame was predicted as {letter!r}; its channel figure is skipped.')
      continue
    strength_C = np.nanmean(letters['contrastive'][i], axis=0)
    channels = [int(ch) for ch in np.argsort(-strength_C)[:s.top_channels]]
    inputs = activation_max.maximize_neurons(config, variables, layer, channels).input_TxF
    others = np.delete(letters['contrastive'], i, axis=0)
    figures.letter_channels(config, letter, layer, channels, letters['contrastive'][i],
                            others[letters['count'][np.arange(26) != i] > 0],
                            np.asarray(inputs),
                            os.path.join(out_dir, f'channels_{letter}_layer{layer}.png'))
  markdown = _clustering_report(rows, names, s.alignment, str(saved['about']), s.min_frames)
  files.write_text(os.path.join(out_dir, 'clustering.md'), markdown)
  return {'rows': rows, 'markdown': markdown, 'meta': meta}


def _clustering_report(rows: list[dict], names: Sequence[str], chosen: str, about: str,
                       min_frames: int) -> str:
  """The markdown of the clustering: NMI per layer and alignment, ARI, and the chance level."""
  by = {(r['layer'], r['alignment']): r for r in rows}
  layers_ = sorted({r['layer'] for r in rows})
  classes = max(r['classes'] for r in rows)
  lines = [f'Phoneme profiles of every layer clustered (average linkage, correlation distance) '
           f'into as many clusters as phonetic categories; up to {classes} phoneme classes with '
           f'at least {min_frames} frames; NAvAI pass over the {about}. Chance: the same score '
           f'with the categories shuffled (mean, 95th percentile), under {chosen}.', '']
  for key, title in (('nmi', 'Normalised mutual information'), ('ari', 'Adjusted Rand index')):
    lines += [f'{title}:', '', '| layer | ' + ' | '.join(names) + ' | chance (95th pct.) |',
              '|---:|' + '---:|' * (len(names) + 1)]
    for l in layers_:
      cells = [f'{by[l, n][key]:.3f}' if (l, n) in by else '' for n in names]
      chance = (f'{by[l, chosen][f"{key}_chance"]:.3f} ({by[l, chosen][f"{key}_chance_95"]:.3f})'
                if (l, chosen) in by else '')
      lines.append(f'| {l} | ' + ' | '.join(cells) + f' | {chance} |')
    lines.append('')
  return '\n'.join(lines)


def _attribution_table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
  """Rows (method, metric, mean, 95% interval, frames) and the markdown of the suite's table."""
  rows = []
  for method, per_frame in result['per_frame'].items():
    for metric, values in per_frame.items():
      if metric.endswith('/curve'):
        continue
      if metric == 'randomisation':
        values = np.asarray(values)[:, -1]  # every layer randomized
        metric = 'randomisation (all layers)'
      mean, half, count = suite.mean_and_interval(values)
      rows.append({'method': method, 'metric': metric, 'mean': mean, 'ci95': half,
                   'frames': count})
  shown = [('bin/deletion/morf/auc', 'deletion AUC, bins (lower: faithful)'),
           ('bin/insertion/morf/auc', 'insertion AUC, bins (higher)'),
           ('column/deletion/morf/aopc', 'AOPC deletion, time columns (higher)'),
           ('patch/deletion/morf/aopc', 'AOPC deletion, 8x8 patches (higher)'),
           ('randomisation (all layers)', 'MPRT Spearman, all layers random (lower)'),
           ('random_logit', 'random logit Spearman (lower)'),
           ('max_sensitivity', 'max-sensitivity (lower)'),
           ('localisation/mass', 'relevance mass in span (higher)'),
           ('localisation/pointing', 'pointing game (higher)'),
           ('localisation/rank', 'relevance rank in span (higher)'),
           ('sparseness', 'Gini sparseness')]
  table = {(r['method'], r['metric']): r for r in rows}
  present = [(k, label) for k, label in shown if any(m == k for _, m in table)]
  lines = ['| method | ' + ' | '.join(label for _, label in present) + ' |',
           '|---' * (len(present) + 1) + '|']
  for method in result['per_frame']:
    cells = []
    for key, _ in present:
      r = table.get((method, key))
      cells.append('—' if r is None or not np.isfinite(r['mean']) else
                   f"{r['mean']:.3f} ± {r['ci95']:.3f}" if np.isfinite(r['ci95']) else
                   f"{r['mean']:.3f}")
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  random_order = [f"{k}: AUC {np.mean(np.trapezoid(v, result['fractions'], axis=1)):.3f}"
                  for k, v in result['random_order'].items() if k.startswith('bin/')]
  chance = [r['mean'] for r in rows if r['metric'] == 'localisation/chance'][:1]
  text = '\n'.join(lines)
  text += (f"\n\n{result['frames']} frames of {result['utterances']} utterances "
           f"({result['timed_frames']} with the letter's true span); mean ± 95% confidence "
           'interval over frames. Removal in random order, bins: ' + '; '.join(random_order)
           + '.')
  if chance:
    text += (' Share of the window inside the true span (chance for mass and rank): '
             f'{chance[0]:.3f}.')
  if result['utterance_deletion']:
    fractions = result['settings']['utterance_fractions']
    text += ('\n\nUtterance-level deletion (SPES): LER after setting the top p of an '
             "utterance's summed relevance to 0.\n\n| method | " +
             ' | '.join(f'p = {p:g}' for p in fractions) + ' |\n' + '|---' * (len(fractions) + 1)
             + '|\n' + '\n'.join(f'| {m} | ' + ' | '.join(f'{v:.3f}' for v in ler) + ' |'
                                 for m, ler in result['utterance_deletion'].items()))
  for note in result['notes']:
    text += f'\n\nNote: {note}.'
  return rows, text


def evaluate_attributions(config: ml_collections.ConfigDict, variables: PyTree, step: int,
                          out_dir: str, *, progress: bool = False) -> tuple[dict, str]:
  """The attribution-evaluation suite (`suite.evaluate`, settings `config.attributions`).

  Writes into `out_dir`: `attributions.md` (the table: method x metric, mean and 95%
  confidence interval over frames), `attributions.csv` (every row), `attributions.json`
  (every number, per-frame values included), `attributions_by_letter.csv` (the localisation
  metrics per predicted letter, where true spans exist), `attribution_curves.png` (mean
  deletion and insertion curves per granularity) and `attribution_randomisation.png`
  (Spearman against the number of layers randomized). Returns the result and the markdown.
  """
  rules.check(config)
  files.check_writable(out_dir)
  suite.check_settings(config.attributions)
  os.makedirs(out_dir, exist_ok=True)
  say = (lambda name: print(f'  {name}', flush=True)) if progress else (lambda _: None)
  result = suite.evaluate(config, variables, progress=say)
  rows, text = _attribution_table(result)
  text = (f'Attribution evaluation, {config.attributions.split} split, checkpoint step '
          f'{step}.\n\n' + text)
  files.write_text(os.path.join(out_dir, 'attributions.md'), text + '\n')
  files.write_text(os.path.join(out_dir, 'attributions.csv'), 'method,metric,mean,ci95,frames\n'
                   + ''.join(f"{r['method']},{r['metric']},{r['mean']:.6g},{r['ci95']:.6g},"
                             f"{r['frames']}\n" for r in rows))
  letters = np.array(result['letters'])
  by_letter = []
  for method, per_frame in result['per_frame'].items():
    for metric, values in per_frame.items():
      if metric.startswith('localisation/') and metric != 'localisation/chance':
        for letter in sorted(set(letters[np.isfinite(values)])):
          v = values[letters == letter]
          by_letter.append(f"{method},{metric.split('/')[1]},{letter},{np.nanmean(v):.6g},"
                           f"{np.isfinite(v).sum()}\n")
  if by_letter:
    files.write_text(os.path.join(out_dir, 'attributions_by_letter.csv'),
                     'method,metric,letter,mean,frames\n' + ''.join(by_letter))
  as_json = jax.tree.map(lambda v: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v,
                         dict(result, checkpoint_step=step))
  files.write_text(os.path.join(out_dir, 'attributions.json'), json.dumps(as_json))
  if result['random_order']:
    figures.attribution_curves(result, os.path.join(out_dir, 'attribution_curves.png'))
  if any('randomisation' in v for v in result['per_frame'].values()):
    figures.attribution_randomisation(result,
                                      os.path.join(out_dir, 'attribution_randomisation.png'))
  return result, text
