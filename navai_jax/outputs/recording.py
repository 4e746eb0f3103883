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
import tqdm

from navai_jax.introspection import alignment
from navai_jax.introspection import attribution
from navai_jax.recognizer import features
from navai_jax.introspection import frames
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

PyTree = Any

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.oga')
SILENCE_DBFS = -60.0  # A recording whose peak stays below this is taken for silence.
# The longest recording explained at once: its frames and their two maps stay in memory and go
# to maps.npz (~10 letter frames a second, 3 x 105 kB each: ~2 GB for 10 minutes).
MAX_SECONDS = 600.0
# Frames whose maps are made at once (memory grows with it, not with the recording).
MAP_CHUNK = 64


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
    ValueError: the file cannot be read as audio, holds a NaN or infinite sample, is silent,
      is shorter than one receptive window (206 feature frames, 1.67 s at 16 kHz) or longer
      than MAX_SECONDS.
  """
  try:
    info = sf.info(path)
  except (sf.LibsndfileError, RuntimeError, TypeError) as e:
    raise ValueError(f'{path} cannot be read as audio ({e}); use WAV, FLAC or OGG.') from None
  if info.duration > MAX_SECONDS:
    raise ValueError(f'{path} lasts {info.duration / 60:.1f} minutes; recordings of at most '
                     f'{MAX_SECONDS / 60:.0f} minutes are explained at once (every frame\'s '
                     'maps are kept): cut it into parts, e.g. `sox IN.wav OUT.wav trim 0 '
                     f'{MAX_SECONDS:.0f} : newfile : restart`, and pass their folder.')
  try:
    audio, rate = sf.read(path, dtype='float32', always_2d=True)
  except (sf.LibsndfileError, RuntimeError, TypeError) as e:
    raise ValueError(f'{path} cannot be read as audio ({e}); use WAV, FLAC or OGG.') from None
  bad = np.argwhere(~np.isfinite(audio))
  if len(bad):
    sample, channel = (int(v) for v in bad[0])
    raise ValueError(f'{path} holds {len(bad)} NaN or infinite sample(s), the first at sample '
                     f'{sample} ({sample / rate:.3f} s, channel {channel + 1}): '
                     f'{audio[sample, channel]}; repair the file.')
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
  out['sensitivity'], out['lrp'], out['probability'] = (
      np.zeros((len(windows),) + windows.shape[1:], np.float32),
      np.zeros((len(windows),) + windows.shape[1:], np.float32), np.zeros(len(windows), np.float32))
  chunks = range(0, len(windows), MAP_CHUNK)
  for start in tqdm.tqdm(chunks, desc='maps', unit='chunk', disable=len(chunks) < 4):
    # Fixed-size chunks (the last one padded) so one program serves the whole recording.
    index = np.minimum(np.arange(start, start + MAP_CHUNK), len(windows) - 1)
    part, t = windows[index], targets[index]
    n = min(MAP_CHUNK, len(windows) - start)
    out['sensitivity'][start:start + n] = np.asarray(
        attribution.attribute('sensitivity', config, variables, part, t))[:n]
    out['lrp'][start:start + n] = np.asarray(
        attribution.attribute('lrp', config, variables, part, t, rule=lrp_rule))[:n]
    out['probability'][start:start + n] = np.asarray(
        attribution.target_probability(config, variables, part, t))[:n]
  for name in ('sensitivity', 'lrp'):
    t_N = np.asarray(alignment.time_of_max(jnp.asarray(out[name]))) if len(windows) else (
        np.zeros(0, np.int64))
    out[f'{name}_max_seconds'] = features.frame_to_seconds(start_N + t_N, config)
  return out
