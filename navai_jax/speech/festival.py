"""Festival (Debian's `festival`, X11-style free licence): two more voices of recorded speakers.

`ked` is a diphone voice cut from the recordings of a US-English male speaker heard by no other
engine here (Debian `festvox-kdlpc16k`, 16 kHz); `slt` is an HTS (hidden Markov model) voice
trained on the CMU ARCTIC recordings of the female speaker whom flite's `slt` models with
another method (Debian `festvox-us-slt-hts`, 32 kHz). Festival keeps the whole utterance
structure, so every segment's end time and the word it belongs to come from the synthesis
itself, in the radio phone set (ARPAbet). `Duration_Stretch` (diphones) and HTS's speech rate
set the rate; the mean pitch target moves only the diphone voice (HTS predicts its own, as
flite's clustergen voices do: Debian's build ignores hts_engine's half-tone shift).
Each utterance is spoken by a fresh `festival` process (~0.3 s): nothing carries over.
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

VOICES = ('ked', 'slt')
_VOICE_FUNCTIONS = {'ked': 'voice_ked_diphone', 'slt': 'voice_cmu_us_slt_arctic_hts'}
_VOICE_FOLDERS = ('english/ked_diphone', 'us/cmu_us_slt_arctic_hts')
_VOICES_DIR = '/usr/share/festival/voices'

# Prints `S name end word-id` for every segment (word-id 0 where the segment belongs to no
# word: a pause, or a sound the post-lexical rules put between words) and `W id name` for every
# word.
_REPORT = """
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (w) (format t "W %s %s\\n" (item.feat w 'id) (item.name w)))
        (utt.relation.items utt 'Word))
(mapcar (lambda (s) (format t "S %s %f %s\\n" (item.name s) (item.feat s 'end)
                            (item.feat s "R:SylStructure.parent.parent.id")))
        (utt.relation.items utt 'Segment))
"""


@functools.cache
def available() -> bool:
  """Whether the `festival` program is on PATH with both voices of VOICES."""
  return shutil.which('festival') is not None and all(
      os.path.isdir(os.path.join(_VOICES_DIR, folder)) for folder in _VOICE_FOLDERS)


def version() -> str:
  text = subprocess.run(['festival', '--version'], capture_output=True, text=True).stdout
  found = re.search(r'System:\s*([\d.]+)', text)
  return found.group(1) if found else text.strip()


def _script(text: str, voice: str, stretch: float, higher: float, wav: str) -> str:
  """The Scheme that speaks `text` with `voice`'s rate and pitch set and reports its times."""
  if not re.fullmatch(r"[a-z', ]+", text):
    raise ValueError(f'festival speaks lower-case words, apostrophes and commas, got {text!r}.')
  lines = [f'({_VOICE_FUNCTIONS[voice]})']
  if voice == 'slt':  # HTS: its own rate, > 1 faster
    lines.append(f'(set! hts_engine_params (append hts_engine_params '
                 f'(list (list "-r" {1 / stretch:.6f}))))')
  else:
    lines.append(f"(Parameter.set 'Duration_Stretch "
                 f"(* (Parameter.get 'Duration_Stretch) {stretch:.6f}))")
    lines.append(f"(set! int_lr_params '((target_f0_mean {85 + 60 * higher:.3f}) "
                 '(target_f0_std 15) (model_f0_mean 170) (model_f0_std 34)))')  # ked's others
  lines.append(f'(set! utt (SynthText "{text}"))')
  return '\n'.join(lines) + _REPORT.format(wav=wav)


def synthesize(text: str, voice: str, stretch: float = 1.0, higher: float = 0.5,
               ) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Speaks `text` (lower-case words, apostrophes, commas) with a Festival voice.

  Args:
    text: what to say.
    voice: one of VOICES.
    stretch: durations times this, > 1 slower.
    higher: 0 (lowest) to 1 (highest) pitch, 85-145 Hz mean (`ked` only).

  Returns:
    int16 audio at 16 kHz, the words `dict(word, start, end)` and the phonemes
    `dict(phoneme (ARPAbet), symbol (Festival's), start, end)`, times in seconds; no words
    where Festival's words are not the text's (the corpus then drops the utterance).
  """
  if voice not in VOICES:
    raise ValueError(f'Unknown Festival voice {voice!r}; one of {VOICES}.')
  with tempfile.TemporaryDirectory() as tmp:
    wav, script = os.path.join(tmp, 'out.wav'), os.path.join(tmp, 'speak.scm')
    with open(script, 'w') as f:
      f.write(_script(text, voice, stretch, higher, wav))
    done = subprocess.run(['festival', '-b', script], capture_output=True, text=True,
                          timeout=120)
    if done.returncode or not os.path.exists(wav):
      raise RuntimeError(f'festival failed ({done.returncode}): '
                         f'{(done.stderr or done.stdout).strip()[-300:]}')
    audio, rate = sf.read(wav, dtype='float64')
  audio_A = librispeech.to_int16(audio, rate)  # slt speaks at 32 kHz
  duration = len(audio_A) / librispeech.SAMPLE_RATE

  names, segments, start = {}, [], 0.0
  for line in done.stdout.splitlines():
    fields = line.split()
    if fields[:1] == ['W'] and len(fields) == 3:
      names[fields[1]] = fields[2].lower()
    elif fields[:1] == ['S'] and len(fields) == 4:
      end = min(float(fields[2]), duration)
      segments.append((fields[1], start, end, fields[3]))
      start = end
  # Festival's tokenizer makes a possessive its own word ("spec's" -> spec 's): it joins the
  # word before it again.
  groups: list[list[str]] = []
  for word_id, name in names.items():
    if name.startswith("'") and groups:
      groups[-1].append(word_id)
    else:
      groups.append([word_id])
  if [''.join(names[w] for w in g) for g in groups] != re.findall(r"[a-z']+", text):
    return audio_A, [], []  # Festival's words are not the text's
  words, phoneme_times = [], []
  for group in groups:
    own = [s for s in segments if s[3] in group]
    if not own:
      return audio_A, [], []
    words.append({'word': ''.join(names[w] for w in group), 'start': own[0][1],
                  'end': own[-1][2]})
  for name, s, e, _ in segments:
    phoneme = inventory.from_flite(name)  # the radio phone set is flite's ARPAbet
    if phoneme is not None:
      phoneme_times.append({'phoneme': phoneme, 'symbol': name, 'start': s, 'end': e})
  return audio_A, words, phoneme_times
