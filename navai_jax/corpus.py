"""An offline English speech corpus synthesized with eSpeak NG, in LibriSpeech's layout.

eSpeak NG is driven through ctypes on the library and data of the `espeakng_loader` wheel, so
nothing needs a system package or the network. Each utterance comes with the true start and end
time of every word and phoneme, taken from eSpeak's own events.

Layout under `out_dir` (as LibriSpeech, with one folder per split):

  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac         16 kHz mono int16
  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.timing.json  word and phoneme times in seconds
  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt        "SPEAKER-CHAPTER-UTT TRANSCRIPT"
  SPEAKERS.txt, corpus.json

A speaker is a (base voice, variant) pair; dev and test speakers and sentences are never used in
training. The plan is deterministic for a seed and synthesis is made deterministic too, so an
interrupted run that is started again ends with exactly the files of an uninterrupted one.
"""

import _ctypes
import ast
import collections
from collections.abc import Iterator, Sequence
import ctypes
import dataclasses
import functools
import itertools
import json
import math
import multiprocessing
import os
import pathlib
import re
import sys
import sysconfig
import time

from absl import logging
import espeakng_loader
import numpy as np
import scipy.signal
import soundfile as sf
import tqdm

from navai_jax import features
from navai_jax import model

SAMPLE_RATE = 16000
SPLITS = ('train', 'dev', 'test')
TEXT_SOURCES = ('pydoc_topics', 'stdlib_docstrings')

# Voices that load with espeak_SetVoiceByName ("en-gb" does not).
BASE_VOICES = ('en-us', 'en', 'en-gb-x-rp', 'en-029', 'en-gb-scotland', 'en-gb-x-gbclan',
               'en-gb-x-gbcwmd', 'en-us-nyc')
# Human-sounding variants from espeak-ng-data/voices/!v; robots, heavy echo, whisper, joke voices
# and "fast" are left out. A variant's position here is part of its speakers' ids: append only.
VARIANTS = (
    'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'f1', 'f2', 'f3', 'f4', 'f5', 'Alex',
    'Alicia', 'Andrea', 'Andy', 'Annie', 'Denis', 'Diogo', 'Gene', 'Gene2', 'Henrique', 'Hugo',
    'Jacky', 'Lee', 'Marco', 'Mario', 'Michael', 'Mike', 'Nguyen', 'Reed', 'Storm', 'adam',
    'anika', 'antonio', 'aunty', 'belinda', 'benjamin', 'boris', 'david', 'ed', 'edward',
    'edward2', 'grandma', 'grandpa', 'gustave', 'iven', 'iven2', 'iven3', 'iven4', 'kaukovalta',
    'klatt', 'klatt2', 'klatt3', 'klatt4', 'klatt5', 'klatt6', 'linda', 'marcelo', 'max',
    'michel', 'miguel', 'mike2', 'paul', 'pedro', 'quincy', 'rob', 'robert', 'sandro', 'shelby',
    'steph', 'steph2', 'steph3', 'travis', 'victor')
RATE_RANGE = (140, 210)  # words per minute, inclusive
PITCH_RANGE = (30, 70)  # eSpeak's 0-100 scale, inclusive

MIN_WORDS = 3
MAX_WORDS = 25
MAX_SECONDS = 12.0
# The model needs one receptive field of feature frames; shorter utterances are dropped.
MIN_SAMPLES = features.samples_for_frames(model.RECEPTIVE_FIELD)
HELD_OUT_FRACTION = 0.05  # of all sentences, for dev and for test each
UTTERANCES_PER_CHAPTER = 100

# ---------------------------------------------------------------------------------------------
# eSpeak NG through ctypes.

_ESPEAK_SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # synthesis runs inside espeak_Synth, no background thread
_INITIALIZE_PHONEME_EVENTS = 1
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
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
      if e.type in (_EVENT_WORD, _EVENT_PHONEME):
        phoneme = e.id.string.decode('utf-8', 'replace') if e.type == _EVENT_PHONEME else ''
        self.events.append((e.type, e.text_position, e.audio_position, phoneme))
      i += 1
    return 0


_espeak = {'lib': None}  # the loaded library; another CDLL of it would keep it from unloading
_LIBC = ctypes.CDLL(None)


def _fresh_espeak(capture: _Capture) -> ctypes.CDLL:
  """Loads libespeak-ng anew, so no state of an earlier synthesis can leak into the next.

  eSpeak keeps static state (output buffers, flutter phase, echo) across calls, so the same text
  sounds slightly different depending on what was spoken before. Unloading and loading the
  library costs under a millisecond and makes each utterance depend on its own arguments only.
  """
  if _espeak['lib'] is not None:
    _espeak['lib'].espeak_Terminate()
    _ctypes.dlclose(_espeak['lib']._handle)  # pylint: disable=protected-access
  lib = ctypes.CDLL(espeakng_loader.get_library_path())
  _espeak['lib'] = lib
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                               espeakng_loader.get_data_path().encode(), _INITIALIZE_PHONEME_EVENTS)
  if rate != _ESPEAK_SAMPLE_RATE:
    raise RuntimeError(f'eSpeak initialization returned {rate}, expected {_ESPEAK_SAMPLE_RATE}.')
  lib.espeak_SetSynthCallback(capture.callback)
  return lib


def espeak_version() -> str:
  lib = _fresh_espeak(_Capture())
  lib.espeak_Info.restype = ctypes.c_char_p
  return lib.espeak_Info(None).decode()


@functools.cache
def available_variants() -> frozenset[str]:
  """Variant names eSpeak knows; an unknown one is silently ignored by eSpeak, so check here."""
  folder = pathlib.Path(espeakng_loader.get_data_path()) / 'voices' / '!v'
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
    audio_T: int16 samples at 16 kHz.
    words: one dict(word, start, end) per word eSpeak spoke, times in seconds; a word ends where
      the next word or a pause begins.
    phonemes: one dict(phoneme, start, end) per phoneme (eSpeak mnemonic with its stress mark,
      e.g. "'aI"; pauses left out); a phoneme ends where the next phoneme, pause or word begins.
      A few have no duration (eSpeak's linking ';', an 'l' merged into its vowel).
  """
  if variant and variant not in available_variants():
    raise ValueError(f'Unknown eSpeak variant {variant!r}; see espeak-ng-data/voices/!v.')
  capture = _Capture()
  lib = _fresh_espeak(capture)
  name = f'{voice}+{variant}' if variant else voice
  if lib.espeak_SetVoiceByName(name.encode()) != 0:
    raise ValueError(f'eSpeak cannot load voice {name!r}.')
  lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
  lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
  lib.espeak_ng_SetRandSeed(seed)
  _LIBC.srand(seed)  # the Klatt voices draw breath noise from libc's rand()
  # eSpeak speaks some word pairs ("of the", "do not") as one word with one word event, hiding
  # where the second word starts. A no-break space between words keeps every word separate, and
  # changes the pronunciation only slightly (less reduced function words).
  data = re.sub(r"(?<=[A-Za-z']) (?=[A-Za-z'])", '\u00a0', text).encode()
  lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)

  audio_22k = np.concatenate(capture.chunks) if capture.chunks else np.zeros(0, np.int16)
  # 22050 Hz * 320 / 441 = 16000 Hz.
  audio_T = scipy.signal.resample_poly(audio_22k.astype(np.float64), 320, 441,
                                       window=_resampling_filter())
  audio_T = np.clip(np.round(audio_T), -32768, 32767).astype(np.int16)
  words, phonemes = _timings(text, capture.events, len(audio_T) / SAMPLE_RATE)
  return audio_T, words, phonemes


@functools.cache
def _resampling_filter() -> np.ndarray:
  """The filter resample_poly designs for 22050 -> 16000 Hz by default, designed only once."""
  return scipy.signal.firwin(2 * 10 * 441 + 1, 1 / 441, window=('kaiser', 5.0))


def _timings(text: str, events: list[tuple], duration: float) -> tuple[list[dict], list[dict]]:
  """Turns eSpeak's word and phoneme events into (start, end) intervals in seconds."""
  spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"[A-Za-z']+", text)]
  words, phonemes, seen = [], [], set()
  open_word = open_phoneme = None
  for kind, text_position, ms, phoneme in events:
    t = min(ms / 1000, duration)
    is_pause = kind == _EVENT_PHONEME and phoneme.startswith('_')
    if open_word is not None and (kind == _EVENT_WORD or is_pause):
      open_word['end'] = max(t, open_word['start'])
      open_word = None
    if open_phoneme is not None:
      open_phoneme['end'] = max(t, open_phoneme['start'])
      open_phoneme = None
    if kind == _EVENT_WORD:
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


def read_timing(path: str | os.PathLike) -> dict:
  """Loads an utterance's `.timing.json`: ids, voice, duration, words and phonemes."""
  return json.loads(pathlib.Path(path).read_text())


# ---------------------------------------------------------------------------------------------
# Text: English prose from the Python documentation that ships with the interpreter.

_ONES = ('zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen '
         'fifteen sixteen seventeen eighteen nineteen').split()
_TENS = 'zero ten twenty thirty forty fifty sixty seventy eighty ninety'.split()
# Characters that mark code, markup or symbols eSpeak would read out.
_CODE_CHARS = re.compile(r'[_()\[\]{}<>=/\\*#@$%^|~`+&]')
_TOKEN = re.compile(r"([A-Za-z0-9'-]+?)([.,;:!?]*)")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?(?:-[A-Za-z]+)*")
_TYPOGRAPHIC = {'\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"', '\u2013': ' - ',
                '\u2014': ' - '}
# Abbreviations that eSpeak expands, so the audio would not match the transcript.
_ABBREVIATIONS = frozenset('etc vs cf al mr mrs ms dr st jr sr approx ca ie eg'.split())


def number_to_words(n: int) -> str:
  """Spells out 0 <= n <= 9999 as LibriSpeech writes numbers, e.g. 'two hundred twenty one'."""
  if not 0 <= n <= 9999:
    raise ValueError(f'Can only spell 0..9999, got {n}.')
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10] + (f' {_ONES[n % 10]}' if n % 10 else '')
  if n < 1000:
    return f'{_ONES[n // 100]} hundred' + (f' {number_to_words(n % 100)}' if n % 100 else '')
  return f'{_ONES[n // 1000]} thousand' + (f' {number_to_words(n % 1000)}' if n % 1000 else '')


def normalize_text(s: str, keep_commas: bool = False) -> str | None:
  """Normalizes one English sentence to lower-case words, or returns None to drop it.

  Keeps letters a-z, apostrophes inside words and single spaces; splits hyphenated words; spells
  out integers up to 9999; removes asides in parentheses and *emphasis* marks. Drops sentences
  with code-like tokens (underscores, brackets, dots inside words, camelCase, acronyms, words
  without vowels), other numbers, abbreviations, non-ASCII characters, and fewer than MIN_WORDS
  or more than MAX_WORDS words.

  Args:
    s: a sentence.
    keep_commas: keep a comma after words followed by , ; : or a dash (for pauses in speech).
  """
  for typographic, plain in _TYPOGRAPHIC.items():
    s = s.replace(typographic, plain)
  s = re.sub(r'\s+\([^()]*\)', '', s)  # asides in parentheses; "f(x)" stays and is dropped below
  s = re.sub(r"\*+([A-Za-z][A-Za-z '-]*[A-Za-z])\*+", r'\1', s)  # *emphasis*
  if not s.isascii() or _CODE_CHARS.search(s):
    return None
  words = []
  for token in s.replace('--', ' - ').replace('"', ' ').split():
    if token == '-':
      punctuation, core = ',', ''
    else:
      match = _TOKEN.fullmatch(token)
      if not match:
        return None
      core, punctuation = match.group(1).strip("'"), match.group(2)
    if core.isdigit():
      if int(core) > 9999 or (len(core) > 1 and core[0] == '0'):
        return None
      words.extend(number_to_words(int(core)).split())
    elif core:
      if (not _WORD.fullmatch(core) or re.search(r'[a-z][A-Z]', core)
          or sum(c.isupper() for c in core) > 1):
        return None
      for part in core.lower().split('-'):
        if not re.search('[aeiouy]', part) or part in _ABBREVIATIONS:
          return None
        words.append(part)
    if keep_commas and words and punctuation[:1] in (',', ';', ':'):
      words[-1] = words[-1].rstrip(',') + ','
  if not MIN_WORDS <= len(words) <= MAX_WORDS:
    return None
  return ' '.join(words).rstrip(',')


def _paragraphs(text: str) -> Iterator[str]:
  """Yields flowing-text paragraphs, skipping indented blocks (code), headings and doctests."""
  for block in re.split(r'\n\s*\n', text):
    lines = block.split('\n')
    if (not block.strip() or block[:1].isspace() or '>>>' in block
        or any(re.fullmatch(r'([*=\-~^])\1+', line.strip()) for line in lines)):
      continue
    yield ' '.join(line.strip() for line in lines)


def _sentences(paragraph: str) -> Iterator[str]:
  for candidate in re.split(r'(?<=[.!?])\s+(?=[A-Z])', paragraph):
    if candidate[:1].isupper() and candidate[-1:] in '.!?':
      yield candidate


def _source_texts(source: str) -> Iterator[str]:
  """Yields the raw texts of a source in a fixed order."""
  if source == 'pydoc_topics':
    import pydoc_data.topics  # pylint: disable=g-import-not-at-top
    for name in sorted(pydoc_data.topics.topics):
      yield pydoc_data.topics.topics[name]
  elif source == 'stdlib_docstrings':
    root = pathlib.Path(sysconfig.get_paths()['stdlib'])
    for path in sorted(root.rglob('*.py')):
      if {'site-packages', 'test', 'tests'} & set(path.relative_to(root).parts):
        continue
      try:
        tree = ast.parse(path.read_bytes())
      except (SyntaxError, ValueError):
        continue
      for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
          if docstring := ast.get_docstring(node):
            yield docstring
  else:
    raise ValueError(f'Unknown text source {source!r}; choose from {TEXT_SOURCES}.')


def load_sentences(sources: Sequence[str] = TEXT_SOURCES) -> list[str]:
  """Returns the sorted unique normalized sentences (with commas) of the given sources."""
  sentences = set()
  for source in sources:
    for text in _source_texts(source):
      for paragraph in _paragraphs(text):
        for candidate in _sentences(paragraph):
          if (sentence := normalize_text(candidate, keep_commas=True)) is not None:
            sentences.add(sentence)
  return sorted(sentences)


def split_sentences(sentences: Sequence[str], seed: int) -> dict[str, list[str]]:
  """Splits sentences into disjoint train, dev and test pools, each in a seeded random order."""
  order = np.random.default_rng(seed).permutation(len(sentences))
  num_held_out = round(HELD_OUT_FRACTION * len(sentences))
  shuffled = [sentences[i] for i in order]
  return {'test': shuffled[:num_held_out], 'dev': shuffled[num_held_out:2 * num_held_out],
          'train': shuffled[2 * num_held_out:]}


# ---------------------------------------------------------------------------------------------
# The plan: who says what, deterministic for a seed.


@dataclasses.dataclass(frozen=True)
class Speaker:
  id: int
  split: str
  voice: str
  variant: str


@dataclasses.dataclass(frozen=True)
class Utterance:
  speaker: Speaker
  chapter: int
  index: int
  text: str  # as spoken: lower case, with commas
  rate: int
  pitch: int
  seed: int

  @property
  def id(self) -> str:
    return f'{self.speaker.id}-{self.chapter}-{self.index:04d}'

  @property
  def transcript(self) -> str:
    return self.text.replace(',', '').upper()


def speaker_id(voice: str, variant: str) -> int:
  """A fixed id per (voice, variant): hundreds give the voice, the rest the variant."""
  return 100 * (BASE_VOICES.index(voice) + 1) + VARIANTS.index(variant)


def choose_speakers(seed: int, num_train: int, num_dev: int, num_test: int) -> list[Speaker]:
  """Picks speakers; dev and test get variants that no training speaker uses."""
  missing = set(VARIANTS) - available_variants()
  if missing:
    raise RuntimeError(f'eSpeak data lacks the variants {sorted(missing)}.')
  num_held_out = num_dev + num_test
  if num_held_out >= len(VARIANTS):
    raise ValueError(f'At most {len(VARIANTS) - 1} dev and test speakers, got {num_held_out}.')
  rng = np.random.default_rng(seed)
  variants = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
  held_out, train_variants = variants[:num_held_out], variants[num_held_out:]
  voices = [BASE_VOICES[i] for i in rng.permutation(len(BASE_VOICES))]
  pairs = {'train': [], 'dev': [], 'test': []}
  for i, variant in enumerate(held_out):
    pairs['dev' if i < num_dev else 'test'].append((voices[i % len(voices)], variant))
  # Cycling voices and variants together uses every voice and as many variants as possible.
  pairs['train'] = [(voices[i % len(voices)], train_variants[i % len(train_variants)])
                    for i in range(num_train)]
  if len(set(pairs['train'])) < num_train:
    raise ValueError(f'At most {math.lcm(len(voices), len(train_variants))} training speakers '
                     f'with {num_held_out} held out, got {num_train}.')
  return [Speaker(speaker_id(voice, variant), split, voice, variant)
          for split in SPLITS for voice, variant in pairs[split]]


def plan_utterances(pool: Sequence[str], speakers: Sequence[Speaker], split: str,
                    seed: int) -> Iterator[Utterance]:
  """Yields the endless deterministic sequence of a split's utterances.

  Speakers take turns, so every prefix is balanced; sentences are used once each before any
  repeats (in a new order).
  """
  if not pool:
    raise ValueError(f'No sentences for the {split} split.')
  split_index = SPLITS.index(split)
  order = range(len(pool))
  for i in itertools.count():
    sentence_pass, j = divmod(i, len(pool))
    if j == 0 and sentence_pass > 0:
      logging.warning('%s: all %d sentences used; pass %d repeats them in a new order.',
                      split, len(pool), sentence_pass + 1)
      order = np.random.default_rng([seed, split_index, sentence_pass]).permutation(len(pool))
    speaker = speakers[i % len(speakers)]
    chapter_index, index = divmod(i // len(speakers), UTTERANCES_PER_CHAPTER)
    if chapter_index >= 100:
      raise ValueError(f'Speaker {speaker.id} would need more than 100 chapters.')
    rng = np.random.default_rng([seed, split_index, i])
    yield Utterance(speaker=speaker, chapter=100 * speaker.id + chapter_index, index=index,
                    text=pool[order[j]],
                    rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                    pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                    seed=int(rng.integers(2**31)))


# ---------------------------------------------------------------------------------------------
# Writing, atomically and resumably.


def _replace_atomically(path: pathlib.Path, write) -> None:
  """Calls write(tmp_path), then renames tmp_path to path, so path is whole or absent."""
  tmp = path.with_name(path.name + '.tmp')
  write(tmp)
  os.replace(tmp, path)


def _write_text(path: pathlib.Path, text: str) -> None:
  _replace_atomically(path, lambda tmp: tmp.write_text(text))


class _Writer:
  """Writes utterances under out_dir and knows which are complete (transcript line written)."""

  def __init__(self, out_dir: pathlib.Path):
    self.out_dir = out_dir
    self._transcripts = {}  # trans.txt path -> {utterance id: transcript}

  def _chapter_dir(self, u: Utterance) -> pathlib.Path:
    return self.out_dir / u.speaker.split / str(u.speaker.id) / str(u.chapter)

  def _lines(self, u: Utterance) -> tuple[pathlib.Path, dict[str, str]]:
    path = self._chapter_dir(u) / f'{u.speaker.id}-{u.chapter}.trans.txt'
    if path not in self._transcripts:
      lines = path.read_text().splitlines() if path.exists() else []
      self._transcripts[path] = dict(line.split(' ', 1) for line in lines)
    return path, self._transcripts[path]

  def duration_if_complete(self, u: Utterance) -> float | None:
    """Seconds of a complete utterance on disk, or None if it must be (re)made."""
    _, lines = self._lines(u)
    timing = self._chapter_dir(u) / f'{u.id}.timing.json'
    if lines.get(u.id) != u.transcript or not timing.exists():
      return None
    if not (self._chapter_dir(u) / f'{u.id}.flac').exists():
      return None
    return read_timing(timing)['duration']

  def write(self, u: Utterance, audio_T: np.ndarray, words: list[dict],
            phonemes: list[dict]) -> None:
    """Writes audio, then timing, then the transcript line, each atomically."""
    folder = self._chapter_dir(u)
    folder.mkdir(parents=True, exist_ok=True)
    _replace_atomically(folder / f'{u.id}.flac', lambda tmp: sf.write(
        tmp, audio_T, SAMPLE_RATE, format='FLAC', subtype='PCM_16'))
    duration = len(audio_T) / SAMPLE_RATE

    def ms(t: float) -> float:  # rounding must not move an end past the audio
      return min(round(t, 3), duration)

    timing = {
        'id': u.id, 'transcript': u.transcript, 'voice': u.speaker.voice,
        'variant': u.speaker.variant, 'rate': u.rate, 'pitch': u.pitch,
        'sample_rate': SAMPLE_RATE, 'duration': duration,
        'words': [dict(w, word=w['word'].upper(), start=ms(w['start']), end=ms(w['end']))
                  for w in words],
        'phonemes': [dict(p, start=ms(p['start']), end=ms(p['end'])) for p in phonemes],
    }
    _write_text(folder / f'{u.id}.timing.json', json.dumps(timing, indent=1) + '\n')
    path, lines = self._lines(u)
    lines[u.id] = u.transcript
    _write_text(path, ''.join(f'{k} {lines[k]}\n' for k in sorted(lines)))


def _synthesize_utterance(u: Utterance) -> tuple[np.ndarray, list[dict], list[dict]]:
  return synthesize(u.text, u.speaker.voice, u.speaker.variant, u.rate, u.pitch, u.seed)


def _in_order(plan: Iterator[Utterance], writer: _Writer, pool,
              lookahead: int) -> Iterator[tuple[Utterance, float | None, tuple | None]]:
  """Yields (utterance, seconds already on disk, synthesis result) in plan order.

  Synthesis runs up to `lookahead` utterances ahead in `pool`, or inline when pool is None.
  """
  pending = collections.deque()
  while True:
    while len(pending) < max(lookahead, 1):
      u = next(plan)
      seconds = writer.duration_if_complete(u)
      job = None if seconds is not None or pool is None else pool.apply_async(
          _synthesize_utterance, (u,))
      pending.append((u, seconds, job))
    u, seconds, job = pending.popleft()
    if seconds is not None:
      yield u, seconds, None
    else:
      yield u, None, job.get() if job is not None else _synthesize_utterance(u)


def _check(u: Utterance, audio_T: np.ndarray, words: list[dict]) -> str | None:
  """Returns why a synthesized utterance must be dropped, or None to keep it."""
  if not len(audio_T):
    return 'empty audio'
  if len(audio_T) < MIN_SAMPLES:
    return (f'{len(audio_T) / SAMPLE_RATE:.2f} s is shorter than one receptive field '
            f'({MIN_SAMPLES / SAMPLE_RATE:.2f} s)')
  if len(audio_T) > MAX_SECONDS * SAMPLE_RATE:
    return f'{len(audio_T) / SAMPLE_RATE:.1f} s is longer than {MAX_SECONDS} s'
  if [w['word'].upper() for w in words] != u.transcript.split():
    return 'eSpeak word events do not match the transcript'
  return None


def _speakers_table(speakers: Sequence[Speaker]) -> str:
  rows = [';ID  |SPLIT|VOICE           |VARIANT']
  rows += [f'{s.id:<5}|{s.split:<5}|{s.voice:<16}|{s.variant}' for s in speakers]
  return '\n'.join(rows) + '\n'


def make_corpus(out_dir: str | os.PathLike, hours: float = 3.0, seed: int = 0,
                dev_hours: float = 0.1, test_hours: float = 0.1, *,
                num_train_speakers: int = 32, num_dev_speakers: int = 4,
                num_test_speakers: int = 4, num_workers: int = 2,
                text_sources: Sequence[str] = TEXT_SOURCES,
                max_new_utterances: int | None = None, progress: bool = False) -> dict:
  """Synthesizes a corpus into out_dir, resuming whatever an earlier run left there.

  Each split gets utterances in plan order until its audio reaches the requested hours.

  Args:
    out_dir: output folder.
    hours: training audio, in hours.
    seed: seed of the sentence split, the speakers and every utterance's rate and pitch.
    dev_hours: dev audio, in hours (0 for none).
    test_hours: test audio, in hours (0 for none).
    num_train_speakers: number of training (voice, variant) pairs.
    num_dev_speakers: number of dev speakers, with variants unused in training.
    num_test_speakers: number of test speakers, with variants unused elsewhere.
    num_workers: synthesis processes; 1 synthesizes in this process.
    text_sources: where sentences come from, a subset of TEXT_SOURCES.
    max_new_utterances: stop after writing this many new utterances, leaving the corpus
      unfinished as an interruption would (for tests).
    progress: show a progress bar per split.

  Returns:
    Statistics: the corpus summary written to corpus.json, plus 'new_utterances', 'dropped',
    'synthesized_seconds' (audio made in this run), 'synthesis_wall_seconds' (time spent making
    and writing it, after loading the text) and 'wall_seconds' of this run.
  """
  problems = [f'{name} must be {rule}, got {value}' for name, value, ok, rule in [
      ('hours', hours, hours > 0, '> 0'), ('seed', seed, seed >= 0, '>= 0'),
      ('dev_hours', dev_hours, dev_hours >= 0, '>= 0'),
      ('test_hours', test_hours, test_hours >= 0, '>= 0'),
      ('num_train_speakers', num_train_speakers, num_train_speakers >= 1, '>= 1'),
      ('num_dev_speakers', num_dev_speakers, num_dev_speakers >= 1, '>= 1'),
      ('num_test_speakers', num_test_speakers, num_test_speakers >= 1, '>= 1'),
      ('num_workers', num_workers, num_workers >= 1, '>= 1')] if not ok]
  if problems:
    raise ValueError('Invalid corpus settings: ' + '; '.join(problems) + '.')
  start = time.perf_counter()
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  for leftover in out.glob('**/*.tmp'):  # from an interrupted run
    leftover.unlink()

  speakers = choose_speakers(seed, num_train_speakers, num_dev_speakers, num_test_speakers)
  table = _speakers_table(speakers)
  speakers_path = out / 'SPEAKERS.txt'
  if speakers_path.exists() and speakers_path.read_text() != table:
    raise ValueError(f'{out} holds a corpus with other speakers (another seed or speaker '
                     'count); choose a new output folder.')
  _write_text(speakers_path, table)
  pools = split_sentences(load_sentences(text_sources), seed)
  targets = {'train': hours * 3600, 'dev': dev_hours * 3600, 'test': test_hours * 3600}

  writer = _Writer(out)
  summary = {'splits': {}}
  stats = {'new_utterances': 0, 'dropped': 0, 'synthesized_seconds': 0.0}
  synthesis_start = time.perf_counter()

  def timed(result: dict) -> dict:
    now = time.perf_counter()
    return dict(result, synthesis_wall_seconds=now - synthesis_start, wall_seconds=now - start)

  pool = (multiprocessing.get_context('spawn').Pool(num_workers) if num_workers > 1 else None)
  try:
    for split in SPLITS:
      split_speakers = [s for s in speakers if s.split == split]
      plan = plan_utterances(pools[split], split_speakers, split, seed)
      seconds, count = 0.0, 0
      results = _in_order(plan, writer, pool, lookahead=2 * num_workers + 2)
      with tqdm.tqdm(total=round(targets[split]), unit='s', desc=split,
                     disable=not progress) as bar:
        while seconds < targets[split]:
          if stats['new_utterances'] == max_new_utterances:
            return timed(stats)
          u, duration, result = next(results)
          if result is not None:
            audio_T, words, phonemes = result
            if reason := _check(u, audio_T, words):
              logging.log_first_n(logging.WARNING, 'Dropping %s (%r): %s (the first 5 drops are '
                                  'shown; the summary counts all).', 5, u.id, u.text, reason)
              stats['dropped'] += 1
              continue
            writer.write(u, audio_T, words, phonemes)
            duration = len(audio_T) / SAMPLE_RATE
            stats['new_utterances'] += 1
            stats['synthesized_seconds'] += duration
          seconds += duration
          count += 1
          bar.update(min(round(seconds), bar.total) - bar.n)
      summary['splits'][split] = {
          'utterances': count, 'hours': round(seconds / 3600, 4),
          'sentences_available': len(pools[split]),
          'speakers': [s.id for s in split_speakers]}
  finally:
    if pool is not None:
      # close() lets the few utterances synthesized ahead finish; terminate() can deadlock when
      # it kills a worker in the middle of sending its result (seen on loaded machines).
      pool.close()
      pool.join()

  summary.update({
      'seed': seed, 'hours': hours, 'dev_hours': dev_hours, 'test_hours': test_hours,
      'sample_rate': SAMPLE_RATE, 'espeak_version': espeak_version(),
      'python_version': sys.version.split()[0], 'text_sources': list(text_sources),
      'speakers': [dataclasses.asdict(s) for s in speakers]})
  _write_text(out / 'corpus.json', json.dumps(summary, indent=1) + '\n')
  return timed(dict(summary, **stats))
