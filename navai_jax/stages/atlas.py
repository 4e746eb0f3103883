"""The channel atlas (CRP for speech): per concept layer, the channels that carry each letter
and what each one hears: its label from the true phonemes, its reference frames cropped to the
unit's receptive field with the channel's conditional map, its AM input, the sound of its best
references, and the channel-conditional NAvAI of each letter."""

import functools
import json
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.introspection import activation_max
from navai_jax.introspection import channel_labels
from navai_jax.introspection import concepts
from navai_jax.introspection import dataset_pass
from navai_jax.introspection import moments
from navai_jax.introspection import navai
from navai_jax.outputs import atlas_figures
from navai_jax.outputs import sonify
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.speech import data
from navai_jax.stages import common
from navai_jax.stages import navai_split
from navai_jax.training import parallel

PyTree = Any


def check(config: ml_collections.ConfigDict) -> None:
  """One ValueError for atlas layers the NAvAI pass does not condition on."""
  missing = sorted(set(config.atlas.layers) - set(config.navai.concept_layers))
  if missing:
    among = ', '.join(map(str, config.navai.concept_layers))
    raise ValueError(f'Atlas layer(s) {", ".join(map(str, missing))} are not among '
                     f'config.navai.concept_layers ({among}).')


def letter_channels(saved: dict, layer: int, count: int) -> np.ndarray:
  """`[26, count]`: each letter's channels of the largest mean share at `layer`."""
  share = saved[f'layer{layer}_letter_share']
  if count > share.shape[1]:
    raise ValueError(f'layer {layer} has {share.shape[1]} channels; got '
                     f'atlas.channels_per_letter={count}')
  return np.argsort(-share, axis=1, kind='stable')[:, :count]


def conditional_pass(config: ml_collections.ConfigDict, variables: PyTree, step: int,
                     workdir: str, out_dir: str, layer: int, table_YxS: np.ndarray,
                     progress: bool) -> dataset_pass.PassResult:
  """Channel-conditional NAvAI of `layer` (`navai.Settings.conditional_channels`) over
  `atlas.max_utterances` of the NAvAI split, resumable like the NAvAI pass."""
  n, a = config.navai, config.atlas
  settings = navai.Settings((a.method,), n.fill, n.frame_batch, concept_layers=(layer,),
                            references=1, conditional_layer=layer,
                            conditional_channels=[tuple(r) for r in table_YxS.tolist()])
  mesh = parallel.make_mesh(jax.local_devices())

  def batches(start: int):
    return data.batches(config, n.split, train=False, start_step=start,
                        batch_multiple=mesh.size, max_utterances=a.max_utterances)

  key = dict(navai_split.resume_key(config, step, workdir), max_utterances=a.max_utterances)
  return dataset_pass.run_pass(config, variables, batches, settings,
                               state_path=os.path.join(out_dir, f'pass_state_layer{layer}.npz'),
                               save_every=n.save_every, resume_key=key, mesh=mesh,
                               progress=progress)


def conditional_patterns(result: dataset_pass.PassResult, slots: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """`(letter_count [26], letter_pattern [26, W, F], count [26, S], pattern [26, S, W, F])`:
  the letters' normalized NAvAI patterns and the channel-conditional ones, each against the
  mean of all letter frames of the same pass (SPEC §8.5's 'frames' baseline)."""
  letters = moments.summarize(moments.Moments(*(jnp.asarray(x[0]) for x in result.letters)))
  cond = moments.summarize(moments.Moments(*(jnp.asarray(x[0]) for x in
                                             result.channel_letters)))
  pattern = cond['mean'] - letters['all_mean'][None]
  shape = (vocab.NUM_LETTERS, slots)
  return (letters['count'], letters['normalized'], cond['count'].reshape(shape),
          pattern.reshape(shape + pattern.shape[1:]))


class _Utterances:
  """Features and audio of the split's utterances, read once each."""

  def __init__(self, config: ml_collections.ConfigDict, split: str):
    self.config, self.data, self.cache = config, data.load_split(config, split), {}

  def __call__(self, u: int) -> tuple[np.ndarray, np.ndarray]:
    if u not in self.cache:
      audio = self.data.audio(u)
      # Padded to whole multiples of 4 s (few shapes to compile; padding changes no feature).
      padded = np.zeros(-(-len(audio) // 64000) * 64000, np.float32)
      padded[:len(audio)] = audio
      x, frames = features.log_mel(jnp.asarray(padded)[None], jnp.asarray([len(audio)]),
                                   self.config)
      self.cache[u] = (np.asarray(x[0, :int(frames[0])]), audio)
    return self.cache[u]


def reference_crops(config: ml_collections.ConfigDict, layers: network.Layers,
                    saved: dict, layer: int, channel: int, count: int, utterances: _Utterances,
                    maps_fn) -> list[list[dict]]:
  """Per kind, the channel's best `count` references: the spectrogram and conditional map of
  the unit's receptive field, its audio, and where it comes from."""
  specs = model.layer_specs(config.model)
  key = lambda name: saved[f'layer{layer}_ref_{name}'][:, channel, :count]
  score, utterance, position, unit, letter, ids = (key(k) for k in (
      'score', 'utterance', 'position', 'unit', 'letter', 'id'))
  found = [(k, i) for k in range(len(concepts.KINDS)) for i in range(score.shape[1])
           if np.isfinite(score[k, i]) and ids[k, i]]
  if not found:
    return [[] for _ in concepts.KINDS]
  windows, targets = [], []
  for k, i in found:
    x, _ = utterances(int(utterance[k, i]))
    start = model.window_start(specs, int(position[k, i]))
    windows.append(x[start:start + model.RECEPTIVE_FIELD])
    targets.append(vocab.LETTER_IDS[0] + int(letter[k, i]))
  width = layers[layer - 1].kernel_KxCxD.shape[-1]
  pad = 2 * count - len(windows)  # one compiled shape for every channel
  maps_NxCxWxF, _, _ = maps_fn(layers, jnp.asarray(np.stack(windows + windows[:1] * pad)),
                               jnp.asarray(targets + targets[:1] * pad), layer,
                               concepts.channel_masks(jnp.asarray([channel]), width))
  maps_NxCxWxF = np.asarray(maps_NxCxWxF)
  c = config.features
  out = [[] for _ in concepts.KINDS]
  for j, (k, i) in enumerate(found):
    first, span = channel_labels.unit_field(specs, layer, int(unit[k, i]))
    start = model.window_start(specs, int(position[k, i])) + int(first)
    _, audio = utterances(int(utterance[k, i]))
    out[k].append({
        'x': windows[j][first:first + span], 'map': maps_NxCxWxF[j, 0, first:first + span],
        'audio': audio[start * c.hop:(start + span - 1) * c.hop + c.window],
        'id': str(ids[k, i]), 'letter': vocab.LETTERS[int(letter[k, i])],
        'seconds': float(features.frame_to_seconds(start, config)), 'score': float(score[k, i])})
  return out


def _label(saved: dict, layer: int, channel: int) -> str:
  key = f'layer{layer}_label'
  if key not in saved:
    return 'no true times'
  if saved[f'{key}_level'][channel] == 'none':
    return (f'{channel_labels.NO_LABEL} (most often {saved[f"{key}_best"][channel]}, '
            f'{saved[f"{key}_share"][channel]:.0%})')
  return (f'{saved[key][channel]} ({saved[f"{key}_share"][channel]:.0%} of references, '
          f'{saved[f"{key}_lift"][channel]:.1f}x random frames)')


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, out_dir: str, *,
        workdir: str, navai_dir: Optional[str] = None, progress: bool = False
        ) -> Optional[dict[str, Any]]:
  """The atlas of `config.atlas.layers` into `out_dir`.

  Reads `NAVAI_DIR/concepts_SPLIT.npz` (concept importance, reference frames and labels of the
  NAvAI pass, which runs first where it is missing or was made otherwise). Per layer: each
  letter's `channels_per_letter` channels of the largest mean share; the channel-conditional
  NAvAI of those (`conditional_pass`, `patterns_layerL.png`, `atlas_layerL.npz`); per chosen
  channel `cards/layerL_channelC.png` (its best `crops` references of each kind with the
  conditional map, and its AM input) and `sound/layerL_channelC_KIND_I.wav` (its best `sounds`
  references of each kind); `atlas.md`, the index of it all.

  One process (the pass over a few hundred utterances is small): run the NAvAI pass on
  several hosts first (`experiments/navai.py --multihost`), then this on one.

  Returns:
    {'markdown', 'layers': {layer: {'table', 'channels', 'count', 'letter_count'}}}.
  """
  common.start(config, out_dir)
  check(config)
  if jax.process_count() > 1:
    raise ValueError('The channel atlas runs in one process: run experiments/navai.py on the '
                     'hosts first, then experiments/atlas.py on one of them.')
  a = config.atlas
  navai_dir = navai_dir or os.path.join(workdir, 'navai')
  saved, _ = navai_split.saved_result(
      config, variables, step, navai_dir, 'concepts', workdir=workdir, wanted={},
      usable=lambda saved: set(a.layers) <= {int(l) for l in saved['layers']} and any(
          k.endswith('_ref_id') for k in saved.files), progress=progress)
  with files.locked(out_dir, 'the channel atlas'):
    found = {}
    for layer in a.layers:
      table = letter_channels(saved, layer, a.channels_per_letter)
      result = conditional_pass(config, variables, step, workdir, out_dir, layer, table,
                                progress)
      found[layer] = _write_layer(config, variables, saved, layer, table, result, out_dir)
    text = markdown(saved, found, a)
    files.write_text(os.path.join(out_dir, 'atlas.md'), text)
  return {'markdown': text, 'layers': found}


def _write_layer(config: ml_collections.ConfigDict, variables: PyTree, saved: dict, layer: int,
                 table_YxS: np.ndarray, result: dataset_pass.PassResult, out_dir: str) -> dict:
  """The conditional patterns, cards and sounds of one layer."""
  a = config.atlas
  letter_count, letter_pattern, count_YxS, pattern_YxS = conditional_patterns(
      result, table_YxS.shape[1])
  share = saved[f'layer{layer}_letter_share']
  rows = [(letter, [(letter_pattern[y], f'all {letter_count[y]} frames')] + [
      (pattern_YxS[y, s], f'ch {c} ({share[y, c]:.1%}): {count_YxS[y, s]}')
      for s, c in enumerate(table_YxS[y])])
          for y, letter in enumerate(vocab.LETTERS) if letter_count[y]]
  if rows:
    atlas_figures.conditional_patterns(
        config, rows, f'Layer {layer}: NAvAI ({a.method}) of each letter over all its frames '
        'and over the frames each of its top channels carries most (normalized)',
        os.path.join(out_dir, f'patterns_layer{layer}.png'))
  common.savez(os.path.join(out_dir, f'atlas_layer{layer}.npz'), channels=table_YxS,
               letter_count=letter_count, letter_pattern=letter_pattern,
               conditional_count=count_YxS, conditional_pattern=pattern_YxS,
               meta=json.dumps({'layer': layer, 'method': a.method,
                                'utterances': result.utterances}))
  channels = sorted({int(c) for y in np.flatnonzero(letter_count) for c in table_YxS[y]})
  am = (np.asarray(activation_max.maximize_neurons(config, variables, layer, channels,
                                                   batch_size=8).input_TxF)
        if channels else None)
  layers = network.layers_from_variables(config, variables)
  maps_fn = jax.jit(functools.partial(concepts.conditional_maps, rule='paper'),
                    static_argnums=3)
  utterances = _Utterances(config, config.navai.split)
  for i, channel in enumerate(channels):
    crops = reference_crops(config, layers, saved, layer, channel, a.crops, utterances, maps_fn)
    panels = [[(r['x'], r['map'], f"'{r['letter']}' {r['id']} @{r['seconds']:.2f}s")
               for r in row] for row in crops]
    carries = ', '.join(vocab.LETTERS[y] for y in np.flatnonzero(letter_count)
                        if channel in table_YxS[y])
    atlas_figures.channel_card(
        config, f'layer {layer}, channel {channel}: {_label(saved, layer, channel)}; '
        f'carries {carries}', panels, concepts.KINDS, am[i] if am is not None else None,
        os.path.join(out_dir, 'cards', f'layer{layer}_channel{channel}.png'))
    for kind, row in zip(concepts.KINDS, crops):
      for j, r in enumerate(row[:a.sounds]):
        sonify.write_wav(os.path.join(out_dir, 'sound',
                                      f'layer{layer}_channel{channel}_{kind}_{j + 1}.wav'),
                         r['audio'], config.features.sample_rate)
  return {'table': table_YxS, 'channels': channels, 'count': count_YxS,
          'letter_count': letter_count}


def markdown(saved: dict, found: dict, a: ml_collections.ConfigDict) -> str:
  """The atlas's index: per layer, each letter's channels with their shares, labels and how
  many frames each carries most; then the channels with their labels."""
  lines = [f'NAvAI over the frames a channel carries most uses `{a.method}`; cards: '
           f'cards/layerL_channelC.png (best {a.crops} references by relevance and by '
           'activation, cropped to the unit\'s receptive field, with the channel\'s conditional '
           'map; the AM input), sounds: sound/.', '']
  for layer, part in found.items():
    share = saved[f'layer{layer}_letter_share']
    lines += [f'## Layer {layer}', '', '| letter | frames | channels (mean share, label, frames '
              'it carries most) |', '|---|---|---|']
    level = saved.get(f'layer{layer}_label_level')
    label = saved.get(f'layer{layer}_label')
    name = lambda c: (label[c] if level is not None and level[c] != 'none' else '-')
    for y in np.flatnonzero(part['letter_count']):
      lines.append(f'| {vocab.LETTERS[y]} | {part["letter_count"][y]} | ' + ', '.join(
          f'{c} ({share[y, c]:.1%}, {name(c)}, {part["count"][y, s]})'
          for s, c in enumerate(part['table'][y])) + ' |')
    lines += ['', '| channel | label |', '|---|---|']
    lines += [f'| {c} | {_label(saved, layer, c)} |' for c in part['channels']]
    lines.append('')
  return '\n'.join(lines)
