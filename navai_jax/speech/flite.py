"""CMU flite (Debian's `flite` package, BSD licence): voices of recorded speakers, true times.

`kal` and `kal16` are diphone voices cut from one US-English male speaker's recordings (8 and
16 kHz); `awb` (Scottish English, male), `rms` (US, male) and `slt` (US, female) are statistical
parametric (clustergen) voices trained on the CMU ARCTIC recordings of those speakers. flite
prints the end time of every segment (`-psdur`); which segments belong to which word comes from
speaking the words one by one, in the sentence's order (`-ps`, no audio kept; a word's
segments can depend on its neighbours), whose segment counts must add up to the sentence's.
`duration_stretch` sets the rate of every voice; the mean pitch (`int_f0_target_mean`) moves
only the diphone voices (clustergen voices predict their own).
"""

import functools
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from navai_jax.speech import librispeech
from navai_jax.speech import phonemes as inventory

VOICES = ('kal', 'kal16', 'awb', 'rms', 'slt')
PITCHED = ('kal', 'kal16')  # the voices whose mean pitch can be set


@functools.cache
def available() -> bool:
  """Whether the `flite` program is on PATH with every voice of VOICES."""
  if shutil.which('flite') is None:
    return False
  listed = subprocess.run(['flite', '-lv'], capture_output=True, text=True).stdout
  return set(VOICES) <= set(listed.split(':', 1)[-1].split())


def version() -> str:
  text = subprocess.run(['flite', '--version'], capture_output=True, text=True).stdout
  return next((line.split(':', 1)[1].strip() for line in text.splitlines()
               if line.strip().startswith('version:')), text.strip())


def _segments(text: str, voice: str, settings: list[str], wav: str | None) -> list[str]:
  """flite's `name:end` (with a wav) or `name` tokens for a text."""
  command = ['flite', '-voice', voice, *settings, '-t', text, '-o', wav or 'none',
             '-psdur' if wav else '-ps']
  done = subprocess.run(command, capture_output=True, text=True, timeout=120)
  if done.returncode:
    raise RuntimeError(f'flite failed ({done.returncode}): {done.stderr.strip()[-300:]}')
  return done.stdout.split()


def synthesize(text: str, voice: str, stretch: float = 1.0, pitch: float = 0.0,
               ) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Speaks `text` (lower-case words, apostrophes, commas) with a flite voice.

  Args:
    text: what to say.
    voice: one of VOICES.
    stretch: `duration_stretch`, > 1 slower.
    pitch: mean pitch in Hz for the diphone voices (PITCHED); 0 keeps the voice's own.

  Returns:
    int16 audio at 16 kHz, the words `dict(word, start, end)` and the phonemes
    `dict(phoneme (ARPAbet), symbol (flite's), start, end)`, times in seconds.
  """
  if voice not in VOICES:
    raise ValueError(f'Unknown flite voice {voice!r}; one of {VOICES}.')
  pitched = (['--setf', f'int_f0_target_mean={pitch:g}'] if pitch and voice in PITCHED else [])
  settings = ['--setf', f'duration_stretch={stretch:g}', *pitched]
  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, 'out.wav')
    segments = _segments(text, voice, settings, wav)
    audio, rate = sf.read(wav, dtype='float64')
  audio_A = librispeech.to_int16(audio, rate)  # kal speaks at 8 kHz
  duration = len(audio_A) / librispeech.SAMPLE_RATE
  words = re.findall(r"[a-z']+", text.lower())
  # Each word alone, as its own sentence: its segment count. The segments are fixed before
  # their durations, so this pass speaks a hundred times faster, in a fifth of the time.
  fast = ['--setf', 'duration_stretch=0.01', *pitched]
  alone = ' '.join(_segments('. '.join(words) + '.', voice, fast, None))
  counts = [len(w.split()) for w in alone.split('pau') if w.strip()]

  phones, start = [], 0.0
  for token in segments:
    name, end = token.rsplit(':', 1)
    end = min(float(end), duration)
    phones.append((name, start, end))
    start = end
  spoken = [p for p in phones if p[0] != 'pau']
  if len(counts) != len(words) or sum(counts) != len(spoken):
    return audio_A, [], []  # the words cannot be placed: the corpus drops the utterance
  word_times, phoneme_times, k = [], [], 0
  for word, count in zip(words, counts):
    own = spoken[k:k + count]
    k += count
    word_times.append({'word': word, 'start': own[0][1], 'end': own[-1][2]})
    phoneme_times += [{'phoneme': inventory.from_flite(name), 'symbol': name, 'start': s,
                       'end': e} for name, s, e in own]
  return audio_A, word_times, phoneme_times
