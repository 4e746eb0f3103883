"""RHVoice (Debian `rhvoice`, LGPL-2.1+; `rhvoice-english` in Debian's non-free): six voices.

Statistical parametric (HTS) voices, each trained on one speaker's recordings: `bdl` and `clb`
(a US-English male and female of CMU ARCTIC, heard by no other engine here), `slt` (the CMU
ARCTIC speaker flite's and Festival's `slt` model), `alan` (CMU ARCTIC's `awb`, flite's
dev speaker, so never trained on), and `lyubov` and `evgeniy-eng` (a female and a male
speaker of English with a Russian accent; CC-BY-NC-ND-4.0). 24 kHz, resampled to 16 kHz.
RHVoice reports no times: its utterances are untimed, as Pico's. Its relative rate and pitch
set the rate and the pitch. Each utterance is spoken by a fresh `RHVoice-test` process
(~0.2 s): nothing carries over, and the same arguments give the same audio.
"""

import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from navai_jax.speech import librispeech

VOICES = ('bdl', 'clb', 'slt', 'lyubov', 'evgeniy-eng', 'alan')
_VOICES_DIR = '/usr/share/RHVoice/voices'


@functools.cache
def available() -> bool:
  """Whether `RHVoice-test` is on PATH with every voice of VOICES."""
  return shutil.which('RHVoice-test') is not None and all(
      os.path.isdir(os.path.join(_VOICES_DIR, v)) for v in VOICES)


def version() -> str:
  """The Debian package's version (`RHVoice-test --version` says "none")."""
  done = subprocess.run(['dpkg-query', '-W', '-f', '${Version}', 'rhvoice'],
                        capture_output=True, text=True)
  return done.stdout.strip() or 'unknown'


def synthesize(text: str, voice: str, faster: float = 1.0, higher: float = 1.0) -> np.ndarray:
  """int16 audio at 16 kHz of `text` in an RHVoice voice, `faster` and `higher` as factors
  (in whole percent, as RHVoice takes them)."""
  if voice not in VOICES:
    raise ValueError(f'Unknown RHVoice voice {voice!r}; one of {VOICES}.')
  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, 'out.wav')
    done = subprocess.run(
        ['RHVoice-test', '-p', voice, '-r', str(round(100 * faster)),
         '-t', str(round(100 * higher)), '-o', wav],
        input=text.encode(), capture_output=True, timeout=120)
    if done.returncode or not os.path.exists(wav):
      raise RuntimeError(f'RHVoice failed ({done.returncode}): '
                         f'{done.stderr.decode(errors="replace").strip()[-300:]}')
    audio, rate = sf.read(wav, dtype='float64')
  if not audio.size:
    raise RuntimeError(f'RHVoice voice {voice} spoke nothing for {text!r}.')
  return librispeech.to_int16(audio, rate)
