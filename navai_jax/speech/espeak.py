"""eSpeak NG through ctypes: speech and the true time of every word and phoneme.

The library and data of the `espeakng_loader` wheel are loaded with ctypes, so nothing needs a
system package or the network; the wheel is imported only when eSpeak speaks, so reading and
training on a corpus runs without it (a GPU image, say). `synthesize` speaks a text with one
voice, rate, pitch and noise seed, resamples eSpeak's 22,050 Hz to the pipeline's 16 kHz and
turns eSpeak's word and phoneme events into intervals. Each call loads the library anew, so an
utterance depends on its own arguments only.
"""

import _ctypes
import ctypes
import functools
import pathlib
import re

import numpy as np
import scipy.signal

from navai_jax.speech import librispeech


# Voices that load with espeak_SetVoiceByName ("en-gb" does not).
VOICES = ('en-us', 'en', 'en-gb-x-rp', 'en-029', 'en-gb-scotland', 'en-gb-x-gbclan',
          'en-gb-x-gbcwmd', 'en-us-nyc')

_ESPEAK_SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # synthesis runs inside espeak_Synth, no background thread
_INITIALIZE_PHONEME_EVENTS = 1
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3


class _EventId(ctypes.Union):
  _fields_ = [('number', ctypes.c_int), ('name', ctypes.c_char_p),
              ('string', ctypes.c_char * 8)]  # phoneme mnemonic, NUL-terminated unless 8 long


class _Event(ctypes.Structure):
  _fields_ = [('type', ctypes.c_int), ('unique_identifier', ctypes.c_uint),
              ('text_position', ctypes.c_int), ('length', ctypes.c_int),
              ('audio_position', ctypes.c_int), ('sample', ctypes.c_int),
              ('user_data', ctypes.c_void_p), ('id', _EventId)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


class _Capture:
  """Collects the samples and (type, text position, ms, phoneme) events of one synthesis."""

  def __init__(self):
    self.chunks = []
    self.events = []
    self.callback = _SynthCallback(self._on_synth)

  def _on_synth(self, wav, num_samples, events) -> int:
    if num_samples > 0:
      self.chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
      e = events[i]
      if e.type in (EVENT_WORD, _EVENT_PHONEME):
        phoneme = e.id.string.decode('utf-8', 'replace') if e.type == _EVENT_PHONEME else ''
        self.events.append((e.type, e.text_position, e.audio_position, phoneme))
      i += 1
    return 0


_espeak = {'lib': None}  # the loaded library; another CDLL of it would keep it from unloading
_LIBC = ctypes.CDLL(None)


def _fresh_espeak(capture: _Capture, library: str | None = None) -> ctypes.CDLL:
  """Loads libespeak-ng anew, so no state of an earlier synthesis can leak into the next.

  eSpeak keeps static state (output buffers, flutter phase, echo) across calls, so the same text
  sounds slightly different depending on what was spoken before. Unloading and loading the
  library costs under a millisecond and makes each utterance depend on its own arguments only.
  `library` is another build of it (with its own compiled-in data); by default the wheel's.
  """
  if _espeak['lib'] is not None:
    _espeak['lib'].espeak_Terminate()
    _ctypes.dlclose(_espeak['lib']._handle)  # pylint: disable=protected-access
    _espeak['lib'] = None
  if library is None:
    loader = _loader()
    library, data = loader.get_library_path(), loader.get_data_path().encode()
  else:
    data = None
  lib = ctypes.CDLL(library)
  _espeak['lib'] = lib
  if hasattr(lib, 'espeak_ng_SetRandSeed'):  # the wheel's build; Debian's 1.51 has none
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS)
  if rate != _ESPEAK_SAMPLE_RATE:
    raise RuntimeError(f'eSpeak initialization returned {rate}, expected {_ESPEAK_SAMPLE_RATE}.')
  lib.espeak_SetSynthCallback(capture.callback)
  return lib


def version() -> str:
  lib = _fresh_espeak(_Capture())
  lib.espeak_Info.restype = ctypes.c_char_p
  return lib.espeak_Info(None).decode()


def _loader():
  try:
    import espeakng_loader  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise RuntimeError('eSpeak NG needs the espeakng-loader wheel (pip install '
                       'espeakng-loader); it is not installed.') from error
  return espeakng_loader


def available() -> bool:
  """Whether the espeakng-loader wheel, which holds the library and its data, is installed."""
  try:
    _loader()
  except RuntimeError:
    return False
  return True


@functools.cache
def available_variants() -> frozenset[str]:
  """Variant names eSpeak knows; an unknown one is silently ignored by eSpeak, so check here."""
  folder = pathlib.Path(_loader().get_data_path()) / 'voices' / '!v'
  return frozenset(p.name for p in folder.iterdir() if p.is_file())


def synthesize(text: str, voice: str, variant: str, rate: int, pitch: int,
               seed: int = 0) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Speaks `text` and returns its audio and the true time of each word and phoneme.

  Args:
    text: lower-case words (letters and apostrophes); commas make pauses.
    voice: an eSpeak voice, e.g. 'en-us'.
    variant: a file name in espeak-ng-data/voices/!v, e.g. 'f3', or '' for none.
    rate: speaking rate in words per minute.
    pitch: base pitch on eSpeak's 0-100 scale.
    seed: seed of eSpeak's noise generators.

  Returns:
    audio_A: int16 samples at 16 kHz.
    words: one dict(word, start, end) per word eSpeak spoke, times in seconds; a word ends where
      the next word or a pause begins.
    phonemes: one dict(phoneme, start, end) per phoneme (eSpeak mnemonic with its stress mark,
      e.g. "'aI"; pauses left out); a phoneme ends where the next phoneme, pause or word begins.
      A few have no duration (eSpeak's linking ';', an 'l' merged into its vowel).
  """
  if variant and variant not in available_variants():
    raise ValueError(f'Unknown eSpeak variant {variant!r}; see espeak-ng-data/voices/!v.')
  audio_22k, events = speak_events(text, f'{voice}+{variant}' if variant else voice, rate,
                                   pitch, seed)
  audio_A = to_16k(audio_22k)
  words, phonemes = timings(text, events, len(audio_A) / librispeech.SAMPLE_RATE)
  return audio_A, words, phonemes


def speak_events(text: str, name: str, rate: int, pitch: int, seed: int | None = None,
                 library: str | None = None) -> tuple[np.ndarray, list[tuple]]:
  """The samples and the (kind, text position, ms, phoneme) word and phoneme events of one
  utterance, spoken by a freshly loaded library (`_fresh_espeak`) with voice `name`.

  `seed` seeds eSpeak's and libc's noise (None: a build without `espeak_ng_SetRandSeed`, as
  Debian's, whose MBROLA voices draw none); the samples are at the voice's own rate.
  """
  capture = _Capture()
  lib = _fresh_espeak(capture, library)
  if lib.espeak_SetVoiceByName(name.encode()) != 0:
    raise ValueError(f'eSpeak cannot load voice {name!r}.')
  lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
  lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
  if seed is not None:
    lib.espeak_ng_SetRandSeed(seed)
    _LIBC.srand(seed)  # the Klatt voices draw breath noise from libc's rand()
  # eSpeak speaks some word pairs ("of the", "do not") as one word with one word event, hiding
  # where the second word starts. A no-break space between words keeps every word separate, and
  # changes the pronunciation only slightly (less reduced function words).
  data = re.sub(r"(?<=[A-Za-z']) (?=[A-Za-z'])", '\u00a0', text).encode()
  lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
  audio = np.concatenate(capture.chunks) if capture.chunks else np.zeros(0, np.int16)
  return audio.astype(np.int16), capture.events


def to_16k(audio_22k: np.ndarray) -> np.ndarray:
  """int16 samples at 22,050 Hz resampled to int16 at 16 kHz (22050 * 320 / 441 = 16000)."""
  audio = scipy.signal.resample_poly(audio_22k.astype(np.float64), 320, 441,
                                     window=_resampling_filter())
  return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


@functools.cache
def _resampling_filter() -> np.ndarray:
  """The filter resample_poly designs for 22050 -> 16000 Hz by default, designed only once."""
  return scipy.signal.firwin(2 * 10 * 441 + 1, 1 / 441, window=('kaiser', 5.0))


def timings(text: str, events: list[tuple], duration: float) -> tuple[list[dict], list[dict]]:
  """Turns eSpeak's word and phoneme events into (start, end) intervals in seconds."""
  spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"[A-Za-z']+", text)]
  words, phonemes, seen = [], [], set()
  open_word = open_phoneme = None
  for kind, text_position, ms, phoneme in events:
    t = min(ms / 1000, duration)
    is_pause = kind == _EVENT_PHONEME and phoneme.startswith('_')
    if open_word is not None and (kind == EVENT_WORD or is_pause):
      open_word['end'] = max(t, open_word['start'])
      open_word = None
    if open_phoneme is not None:
      open_phoneme['end'] = max(t, open_phoneme['start'])
      open_phoneme = None
    if kind == EVENT_WORD:
      # text_position counts characters from 1; an event inside a word already seen is dropped.
      index = next((i for i, (a, b, _) in enumerate(spans) if a <= text_position - 1 < b), None)
      if index is not None and index not in seen:
        seen.add(index)
        open_word = {'word': spans[index][2], 'start': t, 'end': duration}
        words.append(open_word)
    elif not is_pause:
      open_phoneme = {'phoneme': phoneme, 'start': t, 'end': duration}
      phonemes.append(open_phoneme)
  return words, phonemes
