"""MBROLA (Debian `mbrola`, AGPL-3.0; voices in non-free): three recorded speakers, twelve accented.

`us1` (a US-English female speaker), `us2` (a US-English male) and `en1` (a British male,
Edinburgh's "Roger") are diphone databases cut from recordings of three speakers heard by no other
engine here (Debian `mbrola-us1`, `-us2`, `-en1`, 16 kHz; their licences allow them to be used
with the MBROLA program only, hence non-free). `us3` is left out: it lacks the diphones of
eSpeak's /O2/ (as in "on"), which MBROLA replaces with silence (83 in 200 corpus sentences).
Debian's own eSpeak NG (`libespeak-ng1` with `espeak-ng-data`, which holds the `mb-*` voices)
turns the text into phonemes, durations and pitch, and MBROLA joins the diphones: the phoneme
events eSpeak reports as it feeds MBROLA give every phoneme's true time, in eSpeak's mnemonics
(mapped as eSpeak's own), and the first phoneme of each word gives where the word starts.
eSpeak's rate and pitch set the rate and the pitch. The library is loaded anew for each
utterance, as the wheel's eSpeak is: nothing carries over.

`ACCENTED` is a second engine (`mbrola_accented`) of twelve more recorded speakers speaking
English with an accent: other languages' diphone databases (Afrikaans af1; German de4, de5, de6;
French fr1, fr4; Greek gr2; Hungarian hu1; Dutch nl2; Polish pl1; Romanian ro1; Swedish sw1),
which eSpeak's `mb-*-en` voices drive with English text, mapping English phonemes to the nearest
ones the database has. Left out for missing diphones, which MBROLA replaces with silence: de1,
de2 and de3 (23 in 60 corpus sentences each) and sw2 (44). de5, de6, fr4 and gr2 speak at
22,050 Hz, resampled to 16 kHz as eSpeak's own voices are.
"""

import ctypes
import ctypes.util
import functools
import os
import pathlib
import re
import shutil
import signal
import subprocess
import types

import numpy as np

from navai_jax.speech import espeak

VOICES = ('us1', 'us2', 'en1')
ACCENTED_VOICES = ('af1-en', 'de4-en', 'de5-en', 'de6-en', 'fr1-en', 'fr4-en', 'gr2-en', 'hu1-en',
                   'nl2-en', 'pl1-en', 'ro1-en', 'sw1-en')
_VOICES_DIR = '/usr/share/mbrola'
_AT_22K = ('de5', 'de6', 'fr4', 'gr2')  # databases at 22,050 Hz; the others are at 16 kHz
_SAMPLE_RATE = 16000  # of what `synthesize` returns, every voice


def _database(voice: str) -> str:
  return voice.split('-')[0]  # 'de4-en' speaks with the diphones of de4


@functools.cache
def _library() -> str | None:
  return ctypes.util.find_library('espeak-ng')


@functools.cache
def available(voices: tuple[str, ...] = VOICES) -> bool:
  """Whether `mbrola`, Debian's libespeak-ng and every voice of `voices` are installed."""
  return (shutil.which('mbrola') is not None and _library() is not None and all(
      os.path.isfile(os.path.join(_VOICES_DIR, _database(v), _database(v))) for v in voices))


def version() -> str:
  text = subprocess.run(['mbrola'], capture_output=True, text=True)  # its banner
  found = re.search(r'MBROLA\s+([\w.]+)', text.stdout + text.stderr)
  return found.group(1) if found else 'unknown'


def synthesize(text: str, voice: str, rate: int, pitch: int
               ) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Speaks `text` with an MBROLA voice; returns what `espeak.synthesize` returns.

  Args:
    text: lower-case words (letters and apostrophes); commas make pauses.
    voice: one of VOICES or ACCENTED_VOICES.
    rate: speaking rate in words per minute (eSpeak's).
    pitch: base pitch on eSpeak's 0-100 scale.

  Returns:
    int16 audio at 16 kHz, the words `dict(word, start, end)` and the phonemes
    `dict(phoneme (eSpeak's mnemonic), start, end)`, times in seconds; no words where a word's
    first phoneme was not found (the corpus then drops the utterance).
  """
  if voice not in VOICES + ACCENTED_VOICES:
    raise ValueError(f'Unknown MBROLA voice {voice!r}; one of {VOICES + ACCENTED_VOICES}.')
  if not available((voice,)):
    raise RuntimeError(f"MBROLA needs Debian's mbrola, libespeak-ng1 and "
                       f"mbrola-{_database(voice)}.")
  audio, events = espeak.speak_events(text, f'mb-{voice}', rate, pitch, library=_library())
  _stop_mbrola()
  if not audio.size:
    raise RuntimeError(f'MBROLA voice {voice} spoke nothing for {text!r}.')
  audio_A = espeak.to_16k(audio) if _database(voice) in _AT_22K else audio
  return (audio_A, *espeak.timings(text, _word_events(text, events), len(audio_A) / _SAMPLE_RATE))


# The engine `mbrola_accented`: what `voices.ENGINES` asks of an engine module.
ACCENTED = types.SimpleNamespace(
    VOICES=ACCENTED_VOICES, available=functools.partial(available, ACCENTED_VOICES),
    version=version, synthesize=synthesize)


def _stop_mbrola() -> None:
  """Ends the MBROLA process this utterance's library started.

  eSpeak starts one MBROLA process per loaded library and stops it only to load another MBROLA
  voice; unloading the library, as the next utterance does, would leave it waiting on its pipe
  (a corpus worker would gather hundreds).
  """
  for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):
    try:
      head, tail = stat.read_text().rsplit(')', 1)  # "pid (comm) state ppid ..."
      name, parent = head.split('(', 1)[1], int(tail.split()[1])
    except (OSError, IndexError, ValueError):
      continue  # gone meanwhile
    if name == 'mbrola' and parent == os.getpid():
      os.kill(int(stat.parent.name), signal.SIGKILL)  # it ignores SIGTERM
      os.waitpid(int(stat.parent.name), 0)


def _word_events(text: str, events: list[tuple]) -> list[tuple]:
  """`events` on the audio's clock, with a word event before each word's first phoneme.

  Feeding MBROLA, eSpeak reports the first word only; each phoneme event carries the text
  position of its word where it is the word's first phoneme (others carry stale positions).
  Words are taken in order, so a stale position cannot start a word twice or out of turn.
  eSpeak's clock counts a lead-in (62 ms) before the first phoneme that MBROLA does not speak:
  MBROLA's audio starts with the first phoneme, so every time moves back by the lead-in.
  """
  starts = [m.start() + 1 for m in re.finditer(r"[A-Za-z']+", text)]  # eSpeak counts from 1
  word = espeak.EVENT_WORD
  lead = next((ms for kind, _, ms, phoneme in events
               if kind != word and not phoneme.startswith('_')), 0)
  out, next_word = [], 0
  for kind, position, ms, phoneme in events:
    if kind == word:
      continue
    ms = max(ms - lead, 0)
    if (next_word < len(starts) and position == starts[next_word]
        and not phoneme.startswith('_')):
      out.append((word, position, ms, ''))
      next_word += 1
    out.append((kind, position, ms, phoneme))
  return out
