"""A human voice, for evaluation only: Asterisk's English prompts as a LibriSpeech-layout split.

Debian's `asterisk-core-sounds-en-g722` holds about 570 prompts of one professional US-English
speaker (Allison Smith, CC-BY-SA-3.0) as 16 kHz G.722, decoded here with PyPI's `g722`; the
transcripts are `asterisk-core-sounds-en`'s `core-sounds-en.txt.gz` ("name: text" lines).
`make_split` writes the prompts whose text is spoken words as one speaker's split folder:
digits and the keys `*` and `#` written as words, tones and silences (bracketed texts) left
out; a prompt shorter than one receptive field (1.67 s; half of them are) is padded with
silence on both sides to that length, and one whose transcript still does not fit its audio
is left out. No utterance of it is ever trained on or tuned to (SPEC §13).
"""

import gzip
import json
import os
from pathlib import Path
import re
from typing import Optional

import numpy as np
import soundfile as sf

from navai_jax.configs import default
from navai_jax.core import files
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab
from navai_jax.speech import librispeech
from navai_jax.speech import sentences

SOUNDS_DIR = '/usr/share/asterisk/sounds/en_US_f_Allison'
TRANSCRIPTS = '/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz'
DEBIAN_PACKAGES = ('asterisk-core-sounds-en-g722', 'asterisk-core-sounds-en')
SPLIT = 'human'
SPEAKER, CHAPTER = 9001, 1  # The one speaker's ids in LibriSpeech layout.
EXAMPLES = 'examples'  # OUT_DIR/examples: three prompts as recordings to explain
NUM_EXAMPLES = 3
G722_BITRATE = 64000

_KEYS = {'*': ' star ', '#': ' pound '}


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
  """`{prompt name: text}` of a core-sounds-en.txt(.gz) file (';' lines are comments)."""
  path = Path(path)
  if not path.is_file():
    raise librispeech.DataError(f'{path}: no Asterisk transcripts there (Debian package '
                                f'{DEBIAN_PACKAGES[1]}).')
  opener = gzip.open if path.suffix == '.gz' else open
  with opener(path, 'rt', encoding='utf-8', errors='replace') as f:
    lines = f.read().splitlines()
  prompts = {}
  for line in lines:
    name, colon, text = line.partition(':')
    if line.startswith(';') or not colon or not name.strip() or ' ' in name.strip():
      continue
    prompts[name.strip()] = text.strip()
  return prompts


def spoken_text(text: str) -> Optional[str]:
  """The words a prompt says (lower case, single spaces), or None where it is not speech.

  Digits are written as words ('press 1' -> 'press one', '3D' -> 'three d'), `*` and `#` as
  'star' and 'pound'; a bracketed text ('[ascending tones]') or one with anything else that
  is not a letter or an apostrophe is not speech.
  """
  if '[' in text or not text.strip():
    return None
  for key, word in _KEYS.items():
    text = text.replace(key, word)
  text = re.sub(r'\d+', lambda m: f' {sentences.number_to_words(int(m.group()))} ', text)
  text = re.sub(r'[.,;:!?"()]|(?<=\w)-(?=\w)|\s-+\s', ' ', text.lower())
  text = ' '.join(text.split())
  if not text or not re.fullmatch(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*", text):
    return None
  return text


def decode_g722(path: str | os.PathLike) -> np.ndarray:
  """The int16 16 kHz samples of a raw G.722 file (64 kbit/s, as Asterisk's)."""
  import G722  # pylint: disable=g-import-not-at-top  # PyPI `g722`
  with open(path, 'rb') as f:
    data = f.read()
  return np.asarray(G722.G722(features.SAMPLE_RATE, G722_BITRATE).decode(data), np.int16)


def fits(text: str, num_samples: int, specs: tuple[model.LayerSpec, ...]) -> bool:
  """Enough output positions for CTC to align the transcript."""
  frames = int(features.num_frames(num_samples, features.WINDOW, features.HOP))
  return vocab.ctc_length(vocab.encode(text)) <= int(model.output_length(specs, frames))


def make_split(out_dir: str | os.PathLike, sounds_dir: str | os.PathLike = SOUNDS_DIR,
               transcripts: str | os.PathLike = TRANSCRIPTS) -> dict:
  """Writes the spoken prompts as `OUT_DIR/human/9001/1/9001-1-NNNN.flac` and their
  `9001-1.trans.txt`, `OUT_DIR/human/prompts.json` (utterance id -> prompt name), and the
  NUM_EXAMPLES prompts with the most words as `OUT_DIR/examples/NAME.flac`; returns
  the counts of what was kept, padded and left out, and why, and the names of the prompts
  whose audio has no transcript line (not used).

  Raises:
    DataError: no sounds folder or no transcripts file there.
  """
  sounds_dir, out_dir = Path(sounds_dir), Path(out_dir)
  if not sounds_dir.is_dir():
    raise librispeech.DataError(f'{sounds_dir}: no Asterisk sounds folder (Debian package '
                                f'{DEBIAN_PACKAGES[0]}).')
  prompts = read_transcripts(transcripts)
  specs = model.layer_specs(default.get_config().model)  # the strides every preset shares
  chapter = out_dir / SPLIT / str(SPEAKER) / str(CHAPTER)
  chapter.mkdir(parents=True, exist_ok=True)
  for old in [*chapter.glob('*.flac'), *chapter.glob('*.trans.txt')]:  # a split made before
    old.unlink()
  kept, spoken, lines = {}, {}, []
  left_out = {'not speech': 0, 'no audio file': 0, 'empty audio': 0,
              'too short for its transcript': 0}
  padded = 0
  for name in sorted(prompts):
    text = spoken_text(prompts[name])
    path = sounds_dir / f'{name}.g722'
    if text is None:
      left_out['not speech'] += 1
      continue
    if not path.is_file():
      left_out['no audio file'] += 1
      continue
    audio = decode_g722(path)
    if not len(audio):
      left_out['empty audio'] += 1
      continue
    padded += len(audio) < librispeech.MIN_SAMPLES
    audio = librispeech.pad_to_receptive_field(audio)
    if not fits(text, len(audio), specs):
      left_out['too short for its transcript'] += 1
      continue
    utt_id = f'{SPEAKER}-{CHAPTER}-{len(kept):04d}'
    files.write_atomically(chapter / f'{utt_id}.flac', lambda tmp, a=audio: sf.write(
        tmp, a, features.SAMPLE_RATE, format='FLAC', subtype='PCM_16'))
    kept[utt_id], spoken[utt_id] = name, text
    lines.append(f'{utt_id} {text.upper()}\n')
  files.write_text(chapter / f'{SPEAKER}-{CHAPTER}.trans.txt', ''.join(lines))
  # Prompts of the sounds folder that the transcripts do not list, by name.
  untranscribed = sorted(str(p.relative_to(sounds_dir).with_suffix(''))
                         for p in sounds_dir.rglob('*.g722')
                         if str(p.relative_to(sounds_dir).with_suffix('')) not in prompts)
  files.write_text(out_dir / SPLIT / 'prompts.json', json.dumps(kept, indent=1))
  # The prompts with the most words, as recordings of one's own (`experiments/explain_audio.py`).
  examples = out_dir / EXAMPLES
  examples.mkdir(exist_ok=True)
  for old in examples.glob('*.flac'):
    old.unlink()
  for utt_id in sorted(kept, key=lambda u: (-len(spoken[u].split()), u))[:NUM_EXAMPLES]:
    name = re.sub(r'[^A-Za-z0-9_-]', '_', kept[utt_id])
    (examples / f'{name}.flac').write_bytes((chapter / f'{utt_id}.flac').read_bytes())
  seconds = sum(sf.info(str(chapter / f'{u}.flac')).frames for u in kept) / features.SAMPLE_RATE
  return {'utterances': len(kept), 'seconds': round(seconds, 1), 'prompts': len(prompts),
          'padded_with_silence': int(padded), 'left_out': left_out,
          'without_transcript': untranscribed}

