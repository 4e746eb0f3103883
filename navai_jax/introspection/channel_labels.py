"""What a channel hears, named from the corpus's true phoneme times (concept labels).

A channel's reference frames (`concepts.References`) point at the units of its layer where it
carries the most relevance or is most active. The true phoneme sounding at the centre of such a
unit's receptive field, tallied over the channel's references, is compared with the phonemes at
random frames of speech: a channel whose references fall on one phoneme (or one phonetic
category, or silence) far more often than random frames do gets that label; the others get
none. What counts as clear (`Rule`):

  share(x) >= min_share, lift(x) = share(x) / share_random(x) >= min_lift, and a one-sided
  binomial test of share(x) against share_random(x) below `max_p`, from at least
  `min_references` timed references;

phonemes are tried first (the most specific label), then categories and silence. References in
utterances without true times do not count.
"""

import dataclasses
from typing import Mapping, Optional, Sequence

import ml_collections
import numpy as np
from scipy import stats

from navai_jax.core import rules
from navai_jax.introspection import alignment
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import phoneme_times

# The channel atlas (`stages/atlas.py`): which layers, how many channels per letter, reference
# crops and sounds per kind, the alignment of its channel-conditional NAvAI, its utterances.
RULES = {'atlas': [
    ('layers', *rules.layer_numbers(model.NUM_LAYERS - 1)),
    ('channels_per_letter', *rules.at_least(1)),
    ('crops', *rules.at_least(1)), ('sounds', lambda v: v >= 0, '>= 0'),
    ('method', *rules.one_of(alignment.ALIGNMENTS)),
    ('max_utterances', lambda v: v >= 0, '>= 0 (0 = all)'),
]}

SILENCE = 'silence'  # no phoneme sounds (a pause, or before or after the speech)
NO_LABEL = 'no clear label'


@dataclasses.dataclass(frozen=True)
class Rule:
  """When a label is clear (see the module doc)."""
  min_share: float = 0.5
  min_lift: float = 2.0
  max_p: float = 0.01
  min_references: int = 8  # timed references a label needs


def unit_field(specs: Sequence[model.LayerSpec], layer: int, unit) -> tuple[np.ndarray, int]:
  """`(first, width)`: the input frames, counted from the frame's window start, that unit
  `unit` of layer `layer`'s output sees inside the window (VALID geometry)."""
  jump = int(np.prod([s.stride for s in specs[:layer]]))
  return np.asarray(unit) * jump, model.receptive_field(specs[:layer])


def unit_centres(specs: Sequence[model.LayerSpec], layer: int, position, unit) -> np.ndarray:
  """Utterance feature frame at the centre of each unit's receptive field (SAME geometry)."""
  first, width = unit_field(specs, layer, unit)
  return model.window_start(specs, np.asarray(position)) + first + width // 2


def phoneme_at(times: Mapping, seconds: np.ndarray) -> np.ndarray:
  """The phoneme class (`phoneme_times.phoneme_class`) sounding at each time; `SILENCE` where
  none does."""
  names = np.full(np.shape(seconds), SILENCE, dtype=object)
  for p in times['phonemes']:
    names[(seconds >= p['start']) & (seconds < p['end'])] = phoneme_times.phoneme_class(
        p['phoneme'])
  return names


def reference_phonemes(config: ml_collections.ConfigDict, layer: int, ids: np.ndarray,
                       position: np.ndarray, unit: np.ndarray, timings: Mapping[str, str]
                       ) -> np.ndarray:
  """The phoneme at every reference (arrays of one shape, ids '' for an empty slot); '' where
  the utterance has no true times."""
  specs = model.layer_specs(config.model)
  seconds = features.frame_to_seconds(unit_centres(specs, layer, np.where(
      ids == '', 0, position), unit), config)
  out = np.full(ids.shape, '', dtype=object)
  for utt in set(ids.ravel()) - {''}:
    if utt in timings:
      here = ids == utt
      out[here] = phoneme_at(phoneme_times.read_timing(timings[utt]), seconds[here])
  return out


def random_phonemes(timings: Mapping[str, str], count: int = 4000, seed: int = 0,
                    max_utterances: int = 500) -> np.ndarray:
  """The phonemes at `count` random times of speech: utterances drawn from the timed ones
  (at most `max_utterances` read), times uniform between their first phoneme's start and
  last phoneme's end (so pauses inside speech count as silence, the lead-in does not)."""
  ids = sorted(timings)
  if not ids:
    raise ValueError('Channel labels need utterances with true phoneme times; none found.')
  rng = np.random.default_rng(seed)
  chosen = rng.choice(len(ids), size=min(max_utterances, len(ids)), replace=False)
  spans = []
  for i in sorted(chosen):
    times = phoneme_times.read_timing(timings[ids[i]])
    if times['phonemes']:
      spans.append((times, times['phonemes'][0]['start'], times['phonemes'][-1]['end']))
  which = rng.integers(0, len(spans), size=count)
  out = np.empty(count, dtype=object)
  for s, (times, start, end) in enumerate(spans):
    here = which == s
    out[here] = phoneme_at(times, rng.uniform(start, end, size=int(here.sum())))
  return out


def label_channel(names: Sequence[str], random_share: Mapping[str, float],
                  categories: Mapping[str, Optional[str]], rule: Rule = Rule()) -> dict:
  """The label of one channel from the phonemes at its references (`''`: untimed, left out).

  Returns {'label', 'level' ('phoneme', 'category' or 'none'), 'share', 'lift', 'p',
  'references' (timed references), 'best' (the label's phoneme or category; without a clear
  label the most frequent category, whose share, lift and p are given)}.
  """
  names = [n for n in names if n]
  out = {'label': NO_LABEL, 'level': 'none', 'share': 0.0, 'lift': 0.0, 'p': 1.0,
         'references': len(names), 'best': ''}
  if len(names) < max(rule.min_references, 1):
    return out
  as_category = lambda n: n if n == SILENCE else (categories.get(n) or '')
  candidates = []
  for level, keys in (('phoneme', [n for n in names if n != SILENCE]),
                      ('category', [as_category(n) for n in names])):
    values, counts = np.unique([k for k in keys if k], return_counts=True)
    for value, hits in zip(values, counts):
      base = max(random_share.get(f'{level}:{value}', 0.0), 1.0 / 1e6)
      share = hits / len(names)
      p = stats.binomtest(int(hits), len(names), min(base, 1.0), alternative='greater').pvalue
      candidates.append((level, str(value), share, share / base, p))
  if not candidates:
    return out
  for level in ('phoneme', 'category'):
    clear = [c for c in candidates if c[0] == level and c[2] >= rule.min_share and
             c[3] >= rule.min_lift and c[4] < rule.max_p]
    if clear:
      level, value, share, lift, p = max(clear, key=lambda c: (c[2], c[3]))
      shown = f'/{value}/' if level == 'phoneme' else value
      return dict(out, label=shown, level=level, share=float(share), lift=float(lift),
                  p=float(p), best=value)
  # No clear label: the most frequent category (silence included) and how selective it is.
  level, value, share, lift, p = max(
      [c for c in candidates if c[0] == 'category'] or candidates, key=lambda c: (c[2], c[3]))
  return dict(out, share=float(share), lift=float(lift), p=float(p), best=value)


def random_shares(names: np.ndarray, categories: Mapping[str, Optional[str]]
                  ) -> dict[str, float]:
  """'phoneme:X' and 'category:Y' (silence a category) -> share of the random frames."""
  names = [n for n in names if n]
  keys = [f'phoneme:{n}' for n in names if n != SILENCE] + [
      f'category:{n if n == SILENCE else categories.get(n) or ""}' for n in names]
  values, counts = np.unique(keys, return_counts=True)
  return {str(v): c / len(names) for v, c in zip(values, counts)}


def label_layer(names_DxR: np.ndarray, random_names: np.ndarray,
                categories: Mapping[str, Optional[str]], rule: Rule = Rule()) -> list[dict]:
  """`label_channel` of every channel of a layer (`names_DxR`: its references' phonemes)."""
  base = random_shares(random_names, categories)
  return [label_channel(list(row), base, categories, rule) for row in names_DxR]


def carried_by_labelled(share_YxD: np.ndarray, count_Y: np.ndarray, labelled_D: np.ndarray
                        ) -> np.ndarray:
  """Per letter, the part of its channels' |mean share| that labelled channels carry (NaN for
  a letter without frames)."""
  weight = np.abs(share_YxD)
  total = weight.sum(1)
  return np.where((count_Y > 0) & (total > 0),
                  (weight * labelled_D[None]).sum(1) / np.where(total > 0, total, 1), np.nan)


def label_arrays(config: ml_collections.ConfigDict, saved: Mapping[str, np.ndarray],
                 timings: Mapping[str, str], categories: Mapping[str, Optional[str]],
                 rule: Rule = Rule(), seed: int = 0) -> dict[str, np.ndarray]:
  """Labels of every channel of the concept layers of `saved` (`concepts.arrays` with
  `concepts.reference_arrays`), from both kinds of reference frames, keyed for the `.npz`:
  `layerL_label`, `_label_level`, `_label_best`, `_label_share`, `_label_lift`, `_label_p`,
  `_label_references` per channel, and `layerL_letter_labelled` (`carried_by_labelled`)."""
  random_names = random_phonemes(timings, seed=seed)
  out = {}
  for l in saved['layers']:
    ids = saved[f'layer{l}_ref_id']
    names = reference_phonemes(config, int(l), ids, saved[f'layer{l}_ref_position'],
                               saved[f'layer{l}_ref_unit'], timings)  # [2, D, k]
    found = label_layer(np.concatenate(list(names), axis=-1), random_names, categories, rule)
    for key in ('label', 'level', 'best'):
      out[f'layer{l}_label' + ('' if key == 'label' else f'_{key}')] = np.array(
          [f[key] for f in found], dtype=str)
    for key in ('share', 'lift', 'p', 'references'):
      out[f'layer{l}_label_{key}'] = np.array([f[key] for f in found])
    out[f'layer{l}_letter_labelled'] = carried_by_labelled(
        saved[f'layer{l}_letter_share'], saved[f'layer{l}_letter_count'],
        np.array([f['level'] != 'none' for f in found]))
  return out


def markdown(saved: Mapping[str, np.ndarray], letters: Sequence[str], top: int = 3) -> str:
  """Per layer: how many channels have a clear label, how much of each letter's evidence
  labelled channels carry, the labelled channels, and each letter's top channels named."""
  lines = ['## Channel labels', '',
           'From the true phonemes at the centres of the units each channel\'s reference frames '
           'point to (both kinds), against random frames of speech (`channel_labels.Rule`).', '',
           '| layer | channels | clear label | phoneme | category or silence | letters\' evidence '
           'on labelled channels (mean) |', '|---|---|---|---|---|---|']
  for l in saved['layers']:
    level = saved[f'layer{l}_label_level']
    carried = saved[f'layer{l}_letter_labelled']
    lines.append(f'| {l} | {len(level)} | {np.mean(level != "none"):.0%} | '
                 f'{np.sum(level == "phoneme")} | {np.sum(level == "category")} | '
                 f'{np.nanmean(carried) if np.isfinite(carried).any() else float("nan"):.0%} |')
  for l in saved['layers']:
    label, level = saved[f'layer{l}_label'], saved[f'layer{l}_label_level']
    share, lift = saved[f'layer{l}_label_share'], saved[f'layer{l}_label_lift']
    lines += ['', f'### Layer {l}', '', '| letter | top channels (mean share, label) |',
              '|---|---|']
    count, mean = saved[f'layer{l}_letter_count'], saved[f'layer{l}_letter_share']
    for y, name in enumerate(letters):
      if count[y]:
        best = np.argsort(-mean[y], kind='stable')[:top]
        lines.append(f'| {name} | ' + ', '.join(
            f'{c} ({mean[y, c]:.3f}, {label[c] if level[c] != "none" else "-"})'
            for c in best) + ' |')
    named = np.flatnonzero(level != 'none')
    if len(named):
      lines += ['', '| channel | label | share of references | lift over random |',
                '|---|---|---|---|']
      lines += [f'| {c} | {label[c]} | {share[c]:.2f} | {lift[c]:.1f} |'
                for c in named[np.argsort(-lift[named], kind='stable')]]
  return '\n'.join(lines) + '\n'
