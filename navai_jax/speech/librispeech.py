"""A folder in LibriSpeech layout: finding its splits, reading and checking its files.

`PATH/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac` plus one `SPEAKER-CHAPTER.trans.txt` per
chapter with lines `ID TRANSCRIPT`. Reading is strict: a missing, unreadable or
non-16-kHz-mono audio file, a transcript line without audio or audio without a line, an empty
or unspellable transcript, or an utterance shorter than one receptive field (206 feature
frames, 26,752 samples) raises `DataError` naming the file. Both readers of `data` (the TFDS
builder of `tfds_folder` and `reader='direct'`) read through `folder_examples`, and the
synthesized corpus is written in this layout.
"""

import hashlib
import io
import json
import multiprocessing
import os
from pathlib import Path
import re
import shutil
from collections.abc import Iterator
from typing import Any, Optional, Sequence

import numpy as np
import scipy.signal
import soundfile as sf

from navai_jax.core import files
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.recognizer import vocab

SAMPLE_RATE = features.SAMPLE_RATE
# Shortest utterance the pipeline accepts: one receptive field of features.
MIN_SAMPLES = features.samples_for_frames(model.RECEPTIVE_FIELD, features.WINDOW, features.HOP)


def to_int16(audio: np.ndarray, rate: int, full_scale: float = 32768) -> np.ndarray:
  """Float samples at `rate` (full scale 1.0, which becomes `full_scale`) as int16 samples at
  SAMPLE_RATE, resampled by scipy's polyphase filter where the rates differ: what a speech
  engine's output is stored as."""
  if rate != SAMPLE_RATE:
    audio = scipy.signal.resample_poly(audio, SAMPLE_RATE, rate)
  return np.clip(np.round(audio * full_scale), -32768, 32767).astype(np.int16)


def pad_to_receptive_field(audio_A: np.ndarray) -> np.ndarray:
  """`audio_A` with silence (zeros) on both sides up to MIN_SAMPLES, the shorter side first;
  as it is if it is that long already. The left pad is `(MIN_SAMPLES - len) // 2`."""
  missing = max(0, MIN_SAMPLES - len(audio_A))
  return np.pad(audio_A, (missing // 2, missing - missing // 2))


class DataError(ValueError):
  """A corpus that does not hold what the pipeline needs; the message names the file."""


def split_folders(root: Path) -> list[Path]:
  """Subfolders of `root` holding audio or transcripts (not `_tfds` or hidden ones)."""
  if not root.is_dir():
    raise DataError(f'Corpus folder {root} does not exist.')
  found = []
  for sub in sorted(root.iterdir()):
    if sub.is_dir() and not sub.name.startswith(('_', '.')):
      if next(sub.rglob('*.flac'), None) or next(sub.rglob('*.trans.txt'), None):
        found.append(sub)
  if not found:
    raise DataError(f'No split folders with .flac and .trans.txt files in {root} '
                    '(expected PATH/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac).')
  return found


def tfds_split_name(folder_name: str) -> str:
  """TFDS split name of a split folder ('dev-clean' -> 'dev_clean')."""
  return re.sub(r'\W', '_', folder_name)


def _entry_paths(split_dir: Path, entries: Optional[Sequence[str]]) -> list[Path]:
  """The paths of a split folder's `entries` (its speaker folders, or stray files); None: the
  split folder itself."""
  return [split_dir] if entries is None else [split_dir / e for e in entries]


def _files(split_dir: Path, entries: Optional[Sequence[str]], pattern: str) -> list[Path]:
  """Files matching `pattern` under `entries` of `split_dir` (all of it for None), sorted."""
  found = []
  for path in _entry_paths(split_dir, entries):
    found += [path] if path.is_file() and path.match(pattern) else list(path.rglob(pattern))
  return sorted(found)


def folder_fingerprint(root: str | os.PathLike, names: Optional[Sequence[str]] = None,
                       entries: Optional[Sequence[str]] = None) -> str:
  """Hash of the names, sizes and change times of all .flac files and of the transcripts'
  contents (of the split folders `names` only, when given; of the entries `entries` of the
  one split folder in `names` only, when given).

  A FLAC replaced by another of the same size still changes the hash: writing or replacing a
  file sets its change time (`st_ctime_ns`), which no copy tool preserves. Other files (e.g.
  the synthesized corpus's timing files) do not trigger a rebuild.
  """
  h = hashlib.sha1(f'min_samples={MIN_SAMPLES}'.encode())
  root = Path(root).expanduser().resolve()
  for split_dir in split_folders(root):
    if names is not None and split_dir.name not in names:
      continue
    for path in _files(split_dir, entries, '*'):
      if path.name.endswith(('.flac', '.trans.txt')):
        stat = path.stat()
        h.update(f'{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0'
                 f'{stat.st_ctime_ns}\n'.encode())
        if path.name.endswith('.trans.txt'):
          h.update(path.read_bytes())
  return h.hexdigest()


def read_transcripts(split_dir: Path, entries: Optional[Sequence[str]] = None
                     ) -> dict[Path, tuple[str, str, Path]]:
  """Maps each expected .flac path to (id, transcript, transcript file), of the split folder's
  `entries` (speaker folders) only, when given."""
  expected = {}
  for trans in _files(split_dir, entries, '*.trans.txt'):
    try:  # 'utf-8-sig' reads a byte-order mark as nothing.
      content = trans.read_text(encoding='utf-8-sig')
    except UnicodeDecodeError as e:
      line = trans.read_bytes()[:e.start].count(b'\n') + 1
      raise DataError(f'{trans}, line {line}: not UTF-8 text (byte {trans.read_bytes()[e.start]:#x}'
                      f' at offset {e.start}); save the transcripts as UTF-8.') from None
    for line_no, line in enumerate(content.splitlines(), 1):
      if not line.strip():
        continue
      utt_id, text = (re.split(r'\s', line.strip(), maxsplit=1) + [''])[:2]  # space or tab
      where = f'{trans}, line {line_no} ({utt_id!r})'
      if not re.fullmatch(r'\d+-\d+-\d+', utt_id):
        wrong = [(i, c) for i, c in enumerate(utt_id) if c not in '0123456789-']
        bad = (f'character {wrong[0][1]!r} (U+{ord(wrong[0][1]):04X}) at position {wrong[0][0]}'
               if wrong else 'the wrong number of parts')
        raise DataError(f'{where}: utterance ids must read SPEAKER-CHAPTER-UTTERANCE in digits; '
                        f'this one has {bad}.')
      try:
        vocab.encode(text)
      except vocab.UnspellableError as e:
        raise DataError(f'{where}: {e}.') from None
      audio = trans.parent / f'{utt_id}.flac'
      if audio in expected:
        raise DataError(f'{where}: utterance {utt_id} is listed twice.')
      if not audio.is_file():
        raise DataError(f'{where}: transcript line without audio; {audio} is missing.')
      expected[audio] = (utt_id, text.strip(), trans)
  for audio in _files(split_dir, entries, '*.flac'):
    if audio not in expected:
      raise DataError(f'{audio}: audio without a transcript line (expected a line '
                      f'"{audio.stem} ..." in a .trans.txt file next to it).')
  return expected


def _check_format(path: Path, rate: int, channels: int, num_samples: int) -> None:
  if rate != SAMPLE_RATE:
    raise DataError(f'{path}: sample rate {rate} Hz; the pipeline needs {SAMPLE_RATE} Hz.')
  if channels != 1:
    raise DataError(f'{path}: {channels} channels; the pipeline needs mono audio.')
  if num_samples < MIN_SAMPLES:
    raise DataError(
        f'{path}: {num_samples / SAMPLE_RATE:.2f} s is shorter than one receptive field '
        f'({model.RECEPTIVE_FIELD} feature frames = {MIN_SAMPLES} samples, '
        f'{MIN_SAMPLES / SAMPLE_RATE:.2f} s).')


def flac_length(path: Path) -> int:
  """Samples of a FLAC file from its header, checked as `read_flac` checks the audio."""
  if path.stat().st_size == 0:
    raise DataError(f'{path}: empty file (0 bytes).')
  try:
    info = sf.info(path)
  except Exception as e:  # soundfile raises several types for unreadable files.
    raise DataError(f'{path}: cannot read audio ({type(e).__name__}: {e}).') from None
  _check_format(path, info.samplerate, info.channels, info.frames)
  return int(info.frames)


def read_flac(path: Path) -> np.ndarray:
  """16 kHz mono int16 samples of a FLAC file; DataError naming the file otherwise."""
  if path.stat().st_size == 0:
    raise DataError(f'{path}: empty file (0 bytes).')
  try:
    samples, rate = sf.read(path, dtype='int16')
  except Exception as e:  # soundfile raises several types for unreadable files.
    raise DataError(f'{path}: cannot read audio ({type(e).__name__}: {e}).') from None
  _check_format(path, rate, 1 if samples.ndim == 1 else samples.shape[1], len(samples))
  return samples


def folder_examples(split_dir: Path, entries: Optional[Sequence[str]] = None
                    ) -> Iterator[dict[str, Any]]:
  """The examples of one split folder (of its `entries` only, when given), checked, in the
  standard LibriSpeech features.

  Yields dicts with 'id', 'text' (the transcript as written), 'speaker_id', 'chapter_id' and
  'speech' (int16 samples), in the order of the sorted transcript files. This is what the TFDS
  folder builder stores, and what `reader = 'direct'` loads without it.

  Raises:
    DataError: naming the file, for any problem `read_transcripts` or `read_flac` finds.
  """
  for audio, (utt_id, text, _) in read_transcripts(split_dir, entries).items():
    speaker, chapter, _ = utt_id.split('-')
    yield {'id': utt_id, 'text': text, 'speaker_id': int(speaker), 'chapter_id': int(chapter),
           'speech': read_flac(audio)}


RECODED = 'RECODED.json'  # the settings of a `recode_corpus` copy, in its root
CODECS = {'opus': 24.0, 'g722': 64.0}  # codec -> its default bitrate in kbit/s
G722_RATES = (48.0, 56.0, 64.0)  # G.722's three modes, kbit/s (Asterisk's prompts: 64)
G722_DELAY = 22  # samples by which G.722's encoder and decoder filter banks delay the sound


def opus_level(kbps: float) -> float:
  """libsndfile's compression level for Ogg/Opus at `kbps` kbit/s: it maps a level l in [0, 1]
  to a target of (1 - l) * 250 + 6 kbit/s per channel."""
  if not 6 <= kbps <= 256:
    raise ValueError(f'Opus bitrate {kbps} kbit/s; libsndfile offers 6 to 256.')
  return 1.0 - (kbps - 6.0) / 250.0


def g722_bits(kbps: float) -> int:
  """G.722's bit rate in bit/s for `kbps`, one of its three modes (ValueError otherwise)."""
  if kbps not in G722_RATES:
    raise ValueError(f'G.722 bitrate {kbps} kbit/s; it has {", ".join(map(str, G722_RATES))}.')
  return int(kbps * 1000)


def g722_round_trip(samples_A: np.ndarray, kbps: float = 64.0) -> np.ndarray:
  """int16 16 kHz samples through G.722 at `kbps` (48, 56 or 64) and back (PyPI `g722`, as
  `asterisk` decodes the human voice), the codec's delay taken off: as many samples, aligned
  with the input, so a copy's word and phoneme times still hold."""
  rate = g722_bits(kbps)
  import G722  # pylint: disable=g-import-not-at-top  # PyPI `g722`, needed only here
  coded = G722.G722(SAMPLE_RATE, rate).encode(np.asarray(samples_A, np.int16))
  out_A = np.asarray(G722.G722(SAMPLE_RATE, rate).decode(coded), np.int16)[G722_DELAY:]
  return np.pad(out_A, (0, max(0, len(samples_A) - len(out_A))))[:len(samples_A)]


def _recode(job: tuple[Path, Path, str, float]) -> None:
  """One file of `recode_corpus`: FLAC -> codec -> FLAC, FLAC -> Ogg, or Ogg -> FLAC."""
  source, target, codec, kbps = job
  if source.suffix == '.ogg':
    samples, rate = sf.read(source, dtype='int16')
    _check_format(source, rate, 1 if samples.ndim == 1 else samples.shape[1], len(samples))
  else:
    samples = read_flac(source)
  opus = {'format': 'OGG', 'subtype': 'OPUS',
          'compression_level': opus_level(kbps) if codec == 'opus' else None}
  if source.suffix == '.flac' and target.suffix == '.flac':  # through the codec, in memory
    if codec == 'g722':
      samples = g722_round_trip(samples, kbps)
    else:
      buffer = io.BytesIO()
      sf.write(buffer, samples, SAMPLE_RATE, **opus)
      buffer.seek(0)
      samples, _ = sf.read(buffer, dtype='int16')
  with files.atomic(target) as tmp:
    sf.write(tmp, samples, SAMPLE_RATE,
             **(opus if target.suffix == '.ogg' else {'format': 'FLAC', 'subtype': 'PCM_16'}))


def recode_corpus(source: str | os.PathLike, out_dir: str | os.PathLike, splits: Sequence[str],
                  kbps: Optional[float] = None, keep_ogg: bool = False, workers: int = 1,
                  codec: str = 'opus') -> int:
  """Copies a LibriSpeech-layout folder with the audio of `splits` through a codec.

  Each FLAC of `splits` is encoded at `kbps` (the codec's default in `CODECS` if None) and
  decoded back to 16-bit FLAC, so the copy is a corpus like any other whose audio went through
  the codec: Ogg/Opus (`codec='opus'`), or G.722 (`'g722'`, the telephone codec Asterisk's human
  prompts come in; 48, 56 or 64 kbit/s, aligned as the input). With `keep_ogg` (Opus only) the
  Ogg files are written instead (a sixth of the FLAC's size at 24 kbit/s, to carry), and
  recoding that copy turns them back into FLAC. Every other file is copied as it is. `workers`
  processes recode (1: this one). Each file is written atomically and `out_dir/RECODED.json`
  holds the settings, so the same call after an interruption finishes the copy and another
  call on the same folder is refused. Returns the audio files of the copy; DataError names a
  file that cannot be read.
  """
  source, out = Path(source), Path(out_dir)
  if not source.is_dir():
    raise DataError(f'{source} is not a folder.')
  missing = [s for s in splits if not (source / s).is_dir()]
  if missing:
    raise DataError(f'{source} has no split folder(s) {", ".join(missing)}.')
  if codec not in CODECS:
    raise ValueError(f'Codec {codec!r}; recode_corpus knows {", ".join(CODECS)}.')
  kbps = CODECS[codec] if kbps is None else kbps
  if codec == 'opus':
    opus_level(kbps)
  elif keep_ogg:
    raise ValueError(f'keep_ogg writes Ogg/Opus files, not {codec}.')
  else:
    g722_bits(kbps)
  settings = json.dumps({'source': str(source.resolve()), 'splits': sorted(splits),
                         'codec': codec, 'kbps': kbps, 'keep_ogg': keep_ogg}, indent=1) + '\n'
  marker = out / RECODED
  if out.exists() and any(out.iterdir()) and (
      not marker.exists() or marker.read_text() != settings):
    raise DataError(f'{out} holds something other than this copy (another source, splits, '
                    'codec, bitrate or keep_ogg); choose a new output folder.')
  files.write_text(files.check_writable(out) / RECODED, settings)
  for leftover in out.glob('**/*.tmp'):  # from an interrupted run
    leftover.unlink()
  jobs = []
  for path in sorted(source.rglob('*')):
    if path.is_dir() or path == source / RECODED:
      continue
    target = out / path.relative_to(source)
    in_split = path.relative_to(source).parts[0] in splits
    if in_split and path.suffix in ('.flac', '.ogg'):
      target = target.with_suffix('.ogg' if keep_ogg and path.suffix == '.flac' else '.flac')
      jobs.append((path, target, codec, kbps))
    elif not target.exists():
      target.parent.mkdir(parents=True, exist_ok=True)
      with files.atomic(target) as tmp:
        shutil.copy2(path, tmp)
  todo = [job for job in jobs if not job[1].exists()]
  for _, target, *_ in todo:
    target.parent.mkdir(parents=True, exist_ok=True)
  if workers > 1:
    with multiprocessing.get_context('spawn').Pool(workers) as pool:
      pool.map(_recode, todo, chunksize=16)
  else:
    for job in todo:
      _recode(job)
  return len(jobs)
