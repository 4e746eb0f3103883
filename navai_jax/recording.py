"""Your own recording: read any audio file, transcribe it and explain every predicted letter.

`read_recording` reads WAV, FLAC or OGG (anything libsndfile reads) at any sample rate and
channel count, mixes the channels to mono (their mean) and resamples to the model's 16 kHz with
scipy's polyphase resampler (`scipy.signal.resample_poly`, a Kaiser-windowed FIR filter), and
says what it did. `explain` runs the trained network over the whole recording once (the SAME-
padded utterance pass), decodes it greedily, takes every frame (SPEC §4: an output position
predicted as a letter whose 206-frame window lies inside the recording) and makes its
sensitivity (paper eq. 1) and LRP (eqs. 3-4) maps.
"""

import math
import os
from typing import Any, Optional, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import signal
import soundfile as sf

from navai_jax import alignment
from navai_jax import attribution
from navai_jax import features
from navai_jax import frames
from navai_jax import model
from navai_jax import vocab

PyTree = Any

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.oga')
SILENCE_DBFS = -60.0  # A recording whose peak stays below this is taken for silence.


def find_recordings(path: str) -> list[str]:
  """`[path]` for a file; the audio files (AUDIO_SUFFIXES) of a directory, sorted."""
  if os.path.isdir(path):
    found = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(AUDIO_SUFFIXES))
    if not found:
      raise ValueError(f'{path} is a directory without audio files '
                       f'({", ".join(AUDIO_SUFFIXES)}).')
    return found
  if not os.path.exists(path):
    raise ValueError(f'{path} does not exist.')
  return [path]


def read_recording(path: str, config: ml_collections.ConfigDict
                   ) -> tuple[np.ndarray, list[str]]:
  """Mono float32 audio at `config.features.sample_rate`, and notes on what was changed.

  Raises:
    ValueError: the file cannot be read as audio, is silent, or is shorter than one receptive
      window (206 feature frames, 1.67 s at 16 kHz).
  """
  try:
    audio, rate = sf.read(path, dtype='float32', always_2d=True)
  except (sf.LibsndfileError, RuntimeError, TypeError) as e:
    raise ValueError(f'{path} cannot be read as audio ({e}); use WAV, FLAC or OGG.') from None
  notes = []
  if audio.shape[1] > 1:
    notes.append(f'{audio.shape[1]} channels mixed to mono')
  audio = audio.mean(1)
  target = int(config.features.sample_rate)
  if rate != target:
    g = math.gcd(int(rate), target)
    audio = signal.resample_poly(audio, target // g, int(rate) // g).astype(np.float32)
    notes.append(f'resampled from {rate} Hz to {target} Hz')
  peak = float(np.max(np.abs(audio))) if audio.size else 0.0
  if peak <= 10 ** (SILENCE_DBFS / 20):
    level = f'{20 * math.log10(peak):.0f} dBFS' if peak > 0 else 'all zeros'
    raise ValueError(f'{path} is silent (peak {level}); nothing to transcribe.')
  c = config.features
  needed = features.samples_for_frames(model.RECEPTIVE_FIELD, c.window, c.hop)
  if len(audio) < needed:
    raise ValueError(f'{path} lasts {len(audio) / target:.2f} s; the network needs at least '
                     f'{needed / target:.2f} s (one receptive window of '
                     f'{model.RECEPTIVE_FIELD} feature frames).')
  return audio, notes


def explain(config: ml_collections.ConfigDict, variables: PyTree, audio_A: np.ndarray, *,
            letters: Optional[Sequence[str]] = None, lrp_rule: str = 'paper') -> dict:
  """Transcript, frames and maps of one recording at the model's sample rate.

  Args:
    letters: explain only frames predicted as these letters; None for every letter.
  Returns:
    `transcript`; per frame (`[N, ...]`): `windows`, `sensitivity`, `lrp` (`[N, 206, F]`),
    `letters`, `positions` (output positions), `seconds` (time of the window's centre),
    `probability` (softmax of the letter), `sensitivity_max_seconds`, `lrp_max_seconds`
    (the time of each map's largest value, NAvAI's alignment).
  """
  for letter in letters or ():
    if not vocab.is_letter_name(letter):
      raise ValueError(f'{letter!r} is not a letter a-z.')
  audio = jnp.asarray(audio_A, jnp.float32)[None]
  x, frames_B = features.log_mel(audio, jnp.asarray([audio.shape[1]], jnp.int32), config)
  logits, _ = model.apply_inference(config, variables, x)
  length = int(model.output_length(model.layer_specs(config.model), int(frames_B[0])))
  transcript = vocab.greedy_decode(np.asarray(logits[0]), length)
  found = frames.collect(config, variables, x, frames_B)
  keep = np.array([letters is None or l in letters for l in found.letters], bool)
  found = found.take(np.flatnonzero(keep))
  windows = found.windows_NxWxF
  targets = found.tokens_N
  specs = model.layer_specs(config.model)
  start_N = np.asarray(model.window_start(specs, found.positions_N))
  out = {'transcript': transcript, 'windows': windows, 'letters': np.array(found.letters),
         'positions': found.positions_N,
         'seconds': features.frame_to_seconds(start_N + alignment.CENTRE, config)}
  if len(windows):
    out['sensitivity'] = np.asarray(attribution.attribute('sensitivity', config, variables,
                                                          windows, targets))
    out['lrp'] = np.asarray(attribution.attribute('lrp', config, variables, windows, targets,
                                                  rule=lrp_rule))
    out['probability'] = np.asarray(attribution.target_probability(config, variables, windows,
                                                                   targets))
  else:
    empty = np.zeros((0,) + windows.shape[1:], np.float32)
    out.update(sensitivity=empty, lrp=empty, probability=np.zeros(0, np.float32))
  for name in ('sensitivity', 'lrp'):
    t_N = np.asarray(alignment.time_of_max(jnp.asarray(out[name]))) if len(windows) else (
        np.zeros(0, np.int64))
    out[f'{name}_max_seconds'] = features.frame_to_seconds(start_N + t_N, config)
  return out
