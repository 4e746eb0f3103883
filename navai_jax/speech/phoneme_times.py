"""The corpus's true times: reading `.timing.json` files, phoneme classes, phoneme tracks.

A synthesized utterance `SPEAKER-CHAPTER-UTT.flac` has a `SPEAKER-CHAPTER-UTT.timing.json`
beside it with its engine and voice and the start and end (seconds) of every word and phoneme,
the phonemes in ARPAbet (`phonemes`; corpora made before that hold eSpeak mnemonics, which
`phoneme_class` reads as well).
Real LibriSpeech has none; everything here is then simply empty.
"""

import json
import os
import pathlib
import re
from typing import Iterable, Sequence

import ml_collections
import numpy as np

from navai_jax.recognizer import features
from navai_jax.speech import phonemes

SUFFIX = '.timing.json'


def read_timing(path: str | os.PathLike) -> dict:
  """Loads an utterance's `.timing.json`: ids, voice, duration, words and phonemes."""
  return json.loads(pathlib.Path(path).read_text())


def find_timings(config: ml_collections.ConfigDict, timing_dir: str = '') -> dict[str, str]:
  """Timing file of every utterance, by utterance id.

  Searches `timing_dir`, or by default the folder of a `folder:` data source (a copy of the
  corpus without its `.timing.json` files can point here at the original). Utterances of an
  engine without times (Pico; `"timed": false`) are left out. Empty for other sources (e.g.
  real LibriSpeech through TFDS), which have no timings.
  """
  kind, _, root = config.data.source.partition(':')
  if not timing_dir and kind != 'folder':
    return {}
  folder = pathlib.Path(timing_dir or root).expanduser()
  if not folder.is_dir():
    what = 'Timing folder' if timing_dir else f'Corpus folder (config.data.source={root!r})'
    raise ValueError(f'{what} {folder} does not exist.')
  return {p.name[:-len(SUFFIX)]: str(p) for p in sorted(folder.rglob('*' + SUFFIX))
          if read_timing(p).get('timed', True)}


def phoneme_class(mnemonic: str) -> str:
  """The class of an eSpeak phoneme mnemonic: stress marks and variant suffixes removed.

  Leading stress marks (' and ,) and trailing variant marks (digits, '#', '-') go, so
  "'a", "a#" -> "a", "@2", "@5", "@-" -> "@", "t#", "t2" -> "t", "i@3" -> "i@"; the length
  mark stays ("i:") and so do distinct phonemes written with several letters ("aI", "@L").
  A first character is never removed: "0" and "3" are eSpeak vowels, not variant marks.
  """
  bare = mnemonic.lstrip("',") or mnemonic
  return bare[0] + re.sub(r'[0-9#-]+$', '', bare[1:])


def phoneme_inventory(timing_paths: Iterable[str]) -> tuple[str, ...]:
  """Sorted phoneme classes (eSpeak mnemonics without stress marks) of some timing files."""
  return tuple(sorted({phoneme_class(p['phoneme'])
                       for path in timing_paths for p in read_timing(path)['phonemes']}))


def phoneme_track(times: dict, classes: Sequence[str], num_frames: int,
                  config: ml_collections.ConfigDict) -> np.ndarray:
  """Class of the phoneme sounding at the centre of every feature frame; -1 for none.

  A phoneme sounds over [start, end); pauses and phonemes outside `classes` give -1.
  """
  times_T = features.frame_to_seconds(np.arange(num_frames), config)
  index = {c: i for i, c in enumerate(classes)}
  track_T = np.full(num_frames, -1, np.int32)
  for p in times['phonemes']:
    c = index.get(phoneme_class(p['phoneme']), -1)
    track_T[(times_T >= p['start']) & (times_T < p['end']) & (c >= 0)] = c
  return track_T


# Targets of `train.phoneme_head`: 0 for a frame where no phoneme sounds (silence, a pause),
# 1 + k for ARPAbet phoneme k (`phonemes.ARPABET`).
NUM_TARGETS = 1 + len(phonemes.ARPABET)


def frame_targets(times: dict, num_frames: int, config: ml_collections.ConfigDict) -> np.ndarray:
  """int32 [num_frames], the `train.phoneme_head` target of every feature frame of an utterance
  with true times `times` (`read_timing`): 1 + k where ARPAbet phoneme k (`phonemes.ARPABET`)
  sounds at the frame's centre, over [start, end) as in `phoneme_track`; 0 where none does
  (silence, a pause); -1, no target, where a phoneme outside ARPAbet sounds, and throughout
  for an utterance without times (`"timed": false`) or whose phonemes are not ARPAbet (a
  corpus made before `"inventory": "arpabet"`)."""
  if times.get('inventory') != 'arpabet' or not times.get('timed', True):
    return np.full(num_frames, -1, np.int32)
  times_T = features.frame_to_seconds(np.arange(num_frames), config)
  index = {c: k + 1 for k, c in enumerate(phonemes.ARPABET)}
  targets_T = np.zeros(num_frames, np.int32)
  for p in times['phonemes']:
    targets_T[(times_T >= p['start']) & (times_T < p['end'])] = index.get(p['phoneme'], -1)
  return targets_T
