"""Recorded people in other languages, from Debian's packages: a training split of human speech.

Every voice of the corpus is synthesized. The one English speaker with a transcribed hour of
speech found in Debian's packages is Asterisk's, the human test voice (never trained on, SPEC
§13), so this split takes recorded people speaking other languages:

- Asterisk's prompts in Canadian French (June Wallack, `asterisk-core-sounds-fr(-g722)`),
  Italian (Carlo Flora, `-it`) and Russian (ivrvoice.ru, `-ru`), 16 kHz G.722 with their
  `core-sounds-LANG.txt.gz` (CC-BY-SA-3.0, Russian CC-BY-3.0). The Spanish prompts are left out:
  Debian's copyright file credits them, with the English ones, to Allison Smith, the test voice.
- The dialogue of the game Fish Fillets NG in Dutch and Czech (`fillets-ng-data-nl`, `-cs`;
  the texts in `fillets-ng-data`, GPL-2.0): its two fish and the creatures they meet, several
  actors, Vorbis at 22,050 or 44,100 Hz resampled to 16 kHz. A character's lines are one speaker.

Each text is written in the recognizer's 26 letters (`letters`): accents taken off, Cyrillic
transliterated (`_CYRILLIC`); a text with digits is left out (its words in that language are not
written out), as is one longer than `config.data.max_seconds`. A line shorter than one receptive
field is padded with silence as the human test set's are. The letters are those of each
language's spelling, so they stand for other sounds than in English (Czech `c` is /ts/, Dutch
`ij` /ɛi/): what these speakers can teach the recognizer is how people's voices sound.
"""

import collections
import dataclasses
import json
import os
from pathlib import Path
import re
import shutil
from typing import Callable, Iterator, Optional
import unicodedata

import ml_collections
import numpy as np
import soundfile as sf

from navai_jax.configs import default
from navai_jax.core import files
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import asterisk
from navai_jax.speech import librispeech
from navai_jax.speech import sources

SPLIT = 'other_languages'  # the split folder `make_split` writes into a corpus folder
LANGUAGES = ('fr', 'it', 'ru', 'nl', 'cs')
ASTERISK_SOUNDS = '/usr/share/asterisk/sounds'
ASTERISK_DOCS = '/usr/share/doc'
FILLETS = '/usr/share/games/fillets-ng'


@dataclasses.dataclass(frozen=True)
class Source:
  """Where one language's recordings lie and which Debian packages install them."""
  kind: str  # 'asterisk' or 'fillets'
  voice: str  # Asterisk's sounds folder; '' for Fish Fillets
  first_speaker: int  # the first speaker id of its lines in LibriSpeech layout
  packages: tuple[str, ...]


SOURCES = {
    'fr': Source('asterisk', 'fr_CA_f_June', 5001,
                 ('asterisk-core-sounds-fr-g722', 'asterisk-core-sounds-fr')),
    'it': Source('asterisk', 'it_IT_m_Carlo', 5002,
                 ('asterisk-core-sounds-it-g722', 'asterisk-core-sounds-it')),
    'ru': Source('asterisk', 'ru_RU_f_IvrvoiceRU', 5003,
                 ('asterisk-core-sounds-ru-g722', 'asterisk-core-sounds-ru')),
    'nl': Source('fillets', '', 5100, ('fillets-ng-data', 'fillets-ng-data-nl')),
    'cs': Source('fillets', '', 5200, ('fillets-ng-data', 'fillets-ng-data-cs')),
}

_CYRILLIC = dict(zip(
    'абвгдеёжзийклмнопрстуфхцчшщъыьэюя',
    ('a', 'b', 'v', 'g', 'd', 'e', 'e', 'zh', 'z', 'i', 'y', 'k', 'l', 'm', 'n', 'o', 'p', 'r',
     's', 't', 'u', 'f', 'kh', 'ts', 'ch', 'sh', 'shch', '', 'y', '', 'e', 'yu', 'ya')))
_LIGATURES = {'ß': 'ss', 'æ': 'ae', 'œ': 'oe', 'ø': 'o', 'ł': 'l', '’': "'", '`': "'"}
# A dialogue line of Fish Fillets: its id, its character's font, the English text, then the
# language's own text.
_DIALOGUE = re.compile(r'dialogId\("([^"]+)",\s*"([^"]+)"[^\n]*\)\s*\n\s*'
                       r'dialogStr\("((?:[^"\\]|\\.)*)"\)')


def letters(text: str) -> Optional[str]:
  """`text` in the recognizer's letters (lower case, single spaces, inner apostrophes), or None
  where it holds digits or nothing that is a letter.

  >>> letters('Vous êtes maintenant en ligne.'), letters('Добавлено'), letters('Zadej 5')
  ('vous etes maintenant en ligne', 'dobavleno', None)
  """
  text = ''.join(_CYRILLIC.get(c, c) for c in text.lower())
  text = ''.join(_LIGATURES.get(c, c) for c in text)
  text = ''.join(c for c in unicodedata.normalize('NFKD', text) if not unicodedata.combining(c))
  if re.search(r'\d', text):
    return None
  text = re.sub(r"[^a-z']", ' ', text)
  text = re.sub(r"(?<![a-z])'+|'+(?![a-z])", ' ', text)  # quotes, not apostrophes
  text = ' '.join(text.split())
  return text or None


def _asterisk_lines(language: str, source: Source, sounds_root: Path, docs_root: Path
                    ) -> Iterator[tuple[int, str, Callable[[], np.ndarray]]]:
  sounds = sounds_root / source.voice
  transcripts = docs_root / source.packages[1] / f'core-sounds-{language}.txt.gz'
  if not sounds.is_dir() or not transcripts.is_file():
    raise librispeech.DataError(
        f'{sounds if not sounds.is_dir() else transcripts}: not there (Debian packages '
        f'{" and ".join(source.packages)}).')
  prompts = asterisk.read_transcripts(transcripts)
  for name in sorted(prompts):
    path = sounds / f'{name}.g722'
    if path.is_file():
      yield source.first_speaker, prompts[name], lambda p=path: asterisk.decode_g722(p)


def _read_vorbis(path: Path) -> np.ndarray:
  audio, rate = sf.read(str(path), dtype='float64', always_2d=True)
  return librispeech.to_int16(audio.mean(axis=1), rate, full_scale=32767)


def _fillets_lines(language: str, source: Source, root: Path
                   ) -> Iterator[tuple[int, str, Callable[[], np.ndarray]]]:
  scripts = sorted((root / 'script').glob(f'*/dialogs_{language}.lua'))
  if not scripts or not any((root / 'sound').glob(f'*/{language}/*.ogg')):
    raise librispeech.DataError(f'{root}: no Fish Fillets dialogue in {language!r} there '
                                f'(Debian packages {" and ".join(source.packages)}).')
  characters = {}  # a character's font -> its speaker id, in order of first line
  for script in scripts:
    level = script.parent.name
    for line_id, font, said in _DIALOGUE.findall(script.read_text('utf-8', errors='replace')):
      path = root / 'sound' / level / language / f'{line_id}.ogg'
      if path.is_file():
        speaker = characters.setdefault(font, source.first_speaker + len(characters))
        yield speaker, said.replace('\\"', '"'), lambda p=path: _read_vorbis(p)


def lines(language: str, *, asterisk_sounds: str | os.PathLike = ASTERISK_SOUNDS,
          asterisk_docs: str | os.PathLike = ASTERISK_DOCS,
          fillets: str | os.PathLike = FILLETS
          ) -> Iterator[tuple[int, str, Callable[[], np.ndarray]]]:
  """(speaker id, text as written, audio loader) of every recorded line of `language`.

  Raises:
    ValueError: a language not in LANGUAGES.
    DataError: its recordings or texts are not installed (the message names the packages).
  """
  if language not in SOURCES:
    raise ValueError(f'No recordings in {language!r}; languages: {", ".join(LANGUAGES)}.')
  source = SOURCES[language]
  if source.kind == 'asterisk':
    return _asterisk_lines(language, source, Path(asterisk_sounds), Path(asterisk_docs))
  return _fillets_lines(language, source, Path(fillets))


def named_in(split: str) -> bool:
  """Whether a split string ('train+other_languages', 'other_languages[:10%]') names SPLIT."""
  return SPLIT in re.findall(r'[\w-]+', split)


def language_of_speakers(speaker_ids: np.ndarray) -> np.ndarray:
  """int32: 1 + the position in LANGUAGES of each speaker of SPLIT (a language's speakers run
  from its `Source.first_speaker` to the next language's)."""
  firsts = [SOURCES[language].first_speaker for language in LANGUAGES]  # ascending
  return np.searchsorted(firsts, np.asarray(speaker_ids), side='right').astype(np.int32)


def language_ids(config: ml_collections.ConfigDict, split: str, data: sources.Split
                 ) -> np.ndarray:
  """int32 [U], one per utterance of `data` (the index of `split`, `sources.load_split`): 0
  for the corpus's own speech, 1 + the position of its language in LANGUAGES for an utterance
  of SPLIT. `train.language_heads` reads each row through its language's output layer."""
  ids = np.zeros(len(data), np.int32)
  if named_in(split):
    ours = np.isin(data.ids, sources.load_split(config, SPLIT).ids)
    ids[ours] = language_of_speakers(data.speaker_ids[ours])
  return ids


def make_split(corpus_dir: str | os.PathLike, languages: tuple[str, ...] = LANGUAGES,
               **roots) -> dict:
  """Writes the lines of `languages` as the split folder CORPUS_DIR/other_languages (speaker
  folders `SPEAKER/1/`, FLAC and trans.txt, and `summary.json`), replacing one made before;
  returns the summary: per language the lines kept, their hours and speakers, and how many
  were left out and why. Train on it with `config.data.train_split='train+other_languages'`.

  Raises:
    DataError: no folder CORPUS_DIR, or a language's recordings are not installed (the split
      made before is kept).
  """
  if not Path(corpus_dir).is_dir():
    raise librispeech.DataError(f'Corpus folder {corpus_dir} does not exist (make_corpus.py '
                                'makes one).')
  for language in languages:  # every language's files there, before anything is replaced
    next(lines(language, **roots), None)
  config = default.get_config()
  max_samples = int(config.data.max_seconds * features.SAMPLE_RATE)
  specs = model.layer_specs(config.model)  # the strides every preset shares
  out = Path(corpus_dir) / SPLIT
  shutil.rmtree(out, ignore_errors=True)  # one made before, perhaps of other languages
  transcripts = collections.defaultdict(list)
  summary = {}
  for language in languages:
    counts = {'kept': 0, 'hours': 0.0, 'speakers': 0, 'digits or no letters': 0,
              'longer than data.max_seconds': 0, 'too short for its text': 0}
    speakers = set()
    for speaker, said, load in lines(language, **roots):
      text = letters(said)
      if text is None:
        counts['digits or no letters'] += 1
        continue
      audio = load()
      if len(audio) > max_samples:
        counts['longer than data.max_seconds'] += 1
        continue
      audio = librispeech.pad_to_receptive_field(audio)
      if not asterisk.fits(text, len(audio), specs):
        counts['too short for its text'] += 1
        continue
      chapter = out / str(speaker) / '1'
      chapter.mkdir(parents=True, exist_ok=True)
      utt_id = f'{speaker}-1-{len(transcripts[speaker]):04d}'
      files.write_atomically(chapter / f'{utt_id}.flac', lambda tmp, a=audio: sf.write(
          tmp, a, features.SAMPLE_RATE, format='FLAC', subtype='PCM_16'))
      transcripts[speaker].append(f'{utt_id} {text.upper()}\n')
      speakers.add(speaker)
      counts['kept'] += 1
      counts['hours'] += len(audio) / features.SAMPLE_RATE / 3600
    counts['hours'] = round(counts['hours'], 3)
    counts['speakers'] = len(speakers)
    summary[language] = counts
  for speaker, rows in transcripts.items():
    files.write_text(out / str(speaker) / '1' / f'{speaker}-1.trans.txt', ''.join(rows))
  files.write_text(out / 'summary.json', json.dumps(summary, indent=1) + '\n')
  return summary
