"""A recording of one's own (any rate, any channels) transcribed, and the sensitivity and
LRP maps of every letter it is heard to say."""

import json
import os
import re
from typing import Any, Optional, Sequence

import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.outputs import figures
from navai_jax.outputs import recording
from navai_jax.recognizer import features
from navai_jax.stages import common

PyTree = Any


def run(config: ml_collections.ConfigDict, variables: PyTree, step: int, audio: str,
        out_dir: str, *, letters: Optional[Sequence[str]] = None, frames_per_letter: int = 4,
        lrp_rule: str = 'paper') -> list[dict[str, Any]]:
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
  common.start(config, out_dir)
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
    common.savez(os.path.join(here, 'maps.npz'),
                 **{k: v for k, v in found.items() if k != 'transcript'},
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
