"""SVOX Pico through PyPI `py-nanotts` (Apache-2.0): two female voices, no times.

`en-US` and `en-GB` are each one female speaker's voice, 16 kHz. Pico reports no word or
phoneme times: its utterances are marked as untimed (`phonemes` None) and left out only of what
needs times (phoneme classes, alignment quality, localisation). Pico keeps state from one
utterance to the next (the same text sounds slightly different after another one), so each
utterance is spoken by a fresh Python process (~0.1 s): the same arguments give the same audio.
"""

import functools
import importlib.util
import json
import subprocess
import sys

import numpy as np

_SPEAK = (
    'import json, sys, py_nanotts\n'
    'a = json.loads(sys.stdin.read())\n'
    'sys.stdout.buffer.write(py_nanotts.NanoTTS().speak(a["text"], voice=a["voice"], '
    'speed=a["speed"], pitch=a["pitch"]))\n')

VOICES = ('en-US', 'en-GB')


@functools.cache
def available() -> bool:
  return importlib.util.find_spec('py_nanotts') is not None


def version() -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return importlib.metadata.version('py-nanotts')


def synthesize(text: str, voice: str, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
  """int16 audio at 16 kHz of `text` in a Pico voice, `speed` and `pitch` as factors."""
  if voice not in VOICES:
    raise ValueError(f'Unknown Pico voice {voice!r}; one of {VOICES}.')
  done = subprocess.run([sys.executable, '-c', _SPEAK], capture_output=True, timeout=120,
                        input=json.dumps({'text': text, 'voice': voice, 'speed': speed,
                                          'pitch': pitch}).encode())
  if done.returncode:
    raise RuntimeError(f'Pico failed: {done.stderr.decode(errors="replace").strip()[-300:]}')
  return np.frombuffer(done.stdout, '<i2').astype(np.int16)
