"""An offline English speech corpus from several speech engines, in LibriSpeech's layout.

The plan (who says what) is a pure function of the seed and the engines: sentences from
`sentences`, split into disjoint train, dev and test pools; speakers from `voices` (dev and test
hear no training speaker, and a held-out engine none of its voices in training); per utterance
a rate, pitch and noise seed. The engines take turns, and each engine's speakers within its
turns, so every engine says an equal share of every split. Each engine reports the true time of
every word and phoneme (phonemes in ARPAbet, `phonemes`), except Pico, whose utterances are
marked untimed. With `short_fraction` > 0 that share of the utterances says only 1 to 3
words of its sentence, as a prompt, a command or a word list does, and an utterance shorter than
the model's receptive field gets silence on both sides up to it, as a short prompt of the human
set does (`asterisk`); by default every utterance is a whole sentence and one too short for the
receptive field is dropped. The writer puts every file in place atomically, so an interrupted
run that is started again ends with exactly the files of an uninterrupted one; utterances
dropped for what the engine made of them are listed, so a rerun does not synthesize them again.
`speak_split` has chosen voices say another split's transcripts (the human set's prompts).

Layout under `out_dir` (as LibriSpeech, with one folder per split; see `librispeech`):

  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac         16 kHz mono int16
  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.timing.json  engine, voice, word and phoneme times
  SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt        "SPEAKER-CHAPTER-UTT TRANSCRIPT"
  SPEAKERS.txt, corpus.json, DROPPED.tsv                  the dropped: id, transcript, why
"""

import collections
from collections.abc import Iterator, Sequence
import dataclasses
import itertools
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import time

from absl import logging
import numpy as np
import soundfile as sf
import tqdm

from navai_jax.core import files
from navai_jax.speech import librispeech
from navai_jax.speech import sentences
from navai_jax.speech import phoneme_times
from navai_jax.speech import voices

SPLITS = voices.SPLITS
ENGINES = tuple(voices.ENGINES)
DEFAULT_ENGINES = voices.DEFAULT_ENGINES
MAX_SECONDS = 12.0
HELD_OUT_FRACTION = 0.05  # of all sentences, for dev and for test each
# How many words a short utterance says (`make_corpus(short_fraction=)`).
SHORT_WORDS = (1, 3)
UTTERANCES_PER_CHAPTER = 100
# Utterances dropped for what the engine made of them: id, transcript and why, a line each.
DROPPED_FILE = 'DROPPED.tsv'
# Why a corpus that drops short utterances dropped one (a corpus that pads them redoes it).
_TOO_SHORT = 'is shorter than one receptive field'


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
class Utterance:
  speaker: voices.Speaker
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


def plan_utterances(pool: Sequence[str], speakers: Sequence[voices.Speaker], split: str,
                    seed: int, short_fraction: float = 0.0) -> Iterator[Utterance]:
  """Yields the endless deterministic sequence of a split's utterances.

  Engines take turns, and each engine's speakers within its turns, so every prefix is balanced
  (with one engine: the speakers take turns); sentences are used once each before any repeats
  (in a new order). About `short_fraction` of the utterances say a span of their sentence
  (`short_span`); the rest say it whole. Rate, pitch and noise seed do not depend on it.
  """
  if not pool:
    raise ValueError(f'No sentences for the {split} split.')
  by_engine = [[s for s in speakers if s.engine == e] for e in voices.ENGINES]
  by_engine = [group for group in by_engine if group]
  split_index = SPLITS.index(split)
  order = range(len(pool))
  for i in itertools.count():
    sentence_pass, j = divmod(i, len(pool))
    if j == 0 and sentence_pass > 0:
      logging.warning('%s: all %d sentences used; pass %d repeats them in a new order.',
                      split, len(pool), sentence_pass + 1)
      order = np.random.default_rng([seed, split_index, sentence_pass]).permutation(len(pool))
    turn, engine = divmod(i, len(by_engine))
    group = by_engine[engine]
    speaker = group[turn % len(group)]
    chapter_index, index = divmod(turn // len(group), UTTERANCES_PER_CHAPTER)
    if chapter_index >= 100:
      raise ValueError(f'Speaker {speaker.id} would need more than 100 chapters.')
    rng = np.random.default_rng([seed, split_index, i])
    rate = int(rng.integers(voices.RATE_RANGE[0], voices.RATE_RANGE[1] + 1))
    pitch = int(rng.integers(voices.PITCH_RANGE[0], voices.PITCH_RANGE[1] + 1))
    noise_seed = int(rng.integers(2**31))
    text = pool[order[j]]
    if rng.random() < short_fraction:
      text = short_span(text, rng)
    yield Utterance(speaker=speaker, chapter=100 * speaker.id + chapter_index, index=index,
                    text=text, rate=rate, pitch=pitch, seed=noise_seed)


def short_span(text: str, rng: np.random.Generator) -> str:
  """A random span of SHORT_WORDS[0] to SHORT_WORDS[1] consecutive words of `text`, without
  its commas."""
  words = text.replace(',', '').split()
  k = min(len(words), int(rng.integers(SHORT_WORDS[0], SHORT_WORDS[1] + 1)))
  first = int(rng.integers(0, len(words) - k + 1))
  return ' '.join(words[first:first + k])


# ---------------------------------------------------------------------------------------------
# Writing, atomically and resumably.


class _Writer:
  """Writes utterances under out_dir and knows which are complete (transcript line written),
  and which were dropped for what the engine made of them (DROPPED_FILE), so that a rerun
  neither keeps nor synthesizes them again. An engine that failed is not remembered: it may
  not fail again."""

  def __init__(self, out_dir: pathlib.Path, pad_short: bool = False):
    self.out_dir = out_dir
    self.pad_short = pad_short  # whether this corpus pads (True) or drops short utterances
    self._transcripts = {}  # trans.txt path -> {utterance id: transcript}
    self._dropped = {}  # utterance id -> (transcript, reason)
    path = out_dir / DROPPED_FILE
    if path.exists():
      for line in path.read_text().split('\n')[:-1]:  # a last line without its end: cut short
        if len(fields := line.split('\t')) == 3:
          self._dropped[fields[0]] = tuple(fields[1:])

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
    timing_path = self._chapter_dir(u) / f'{u.id}.timing.json'
    if lines.get(u.id) != u.transcript or not timing_path.exists():
      return None
    if not (self._chapter_dir(u) / f'{u.id}.flac').exists():
      return None
    timing = phoneme_times.read_timing(timing_path)
    if timing.get('padded') and not self.pad_short:  # made by a run that padded: drop it now
      return None
    return timing['duration']

  def dropped_before(self, u: Utterance) -> str | None:
    """Why an earlier run dropped this utterance, or None."""
    transcript, reason = self._dropped.get(u.id, (None, None))
    if reason and _TOO_SHORT in reason and self.pad_short:  # a run that dropped; now padded
      return None
    return reason if transcript == u.transcript else None

  def drop(self, u: Utterance, reason: str) -> None:
    """Appends its line; `keep_drops` writes the whole file at the end."""
    self._dropped[u.id] = (u.transcript, reason)
    with open(self.out_dir / DROPPED_FILE, 'a') as f:
      f.write(f'{u.id}\t{u.transcript}\t{reason}\n')

  def keep_drops(self, ids) -> None:
    """DROPPED_FILE lists the drops among `ids` (those of this corpus's plan), by id."""
    self._dropped = {k: v for k, v in self._dropped.items() if k in ids}
    path = self.out_dir / DROPPED_FILE
    if self._dropped:
      files.write_text(path, ''.join(f'{k}\t{t}\t{r}\n'
                                     for k, (t, r) in sorted(self._dropped.items())))
    elif path.exists():
      path.unlink()

  def write(self, u: Utterance, audio_A: np.ndarray, words: list[dict] | None,
            phonemes: list[dict] | None, padded: bool = False) -> None:
    """Writes audio, then timing, then the transcript line, each atomically."""
    folder = self._chapter_dir(u)
    folder.mkdir(parents=True, exist_ok=True)
    files.write_atomically(folder / f'{u.id}.flac', lambda tmp: sf.write(
        tmp, audio_A, librispeech.SAMPLE_RATE, format='FLAC', subtype='PCM_16'))
    duration = len(audio_A) / librispeech.SAMPLE_RATE

    def ms(t: float) -> float:  # rounding must not move an end past the audio
      return min(round(t, 3), duration)

    times = {
        'id': u.id, 'transcript': u.transcript, 'engine': u.speaker.engine,
        'voice': u.speaker.voice, 'variant': u.speaker.variant, 'rate': u.rate,
        'pitch': u.pitch, 'sample_rate': librispeech.SAMPLE_RATE, 'duration': duration,
        'inventory': 'arpabet', 'timed': words is not None,
        'words': None if words is None else [
            dict(w, word=w['word'].upper(), start=ms(w['start']), end=ms(w['end']))
            for w in words],
        'phonemes': None if phonemes is None else [
            dict(p, start=ms(p['start']), end=ms(p['end'])) for p in phonemes],
    }
    if padded:  # silence added up to one receptive field (`make_corpus(short_fraction=)`)
      times['padded'] = True
    files.write_text(folder / f'{u.id}.timing.json', json.dumps(times, indent=1) + '\n')
    path, lines = self._lines(u)
    lines[u.id] = u.transcript
    files.write_text(path, ''.join(f'{k} {lines[k]}\n' for k in sorted(lines)))


def _synthesize_utterance(u: Utterance) -> tuple[np.ndarray, list[dict] | None,
                                                 list[dict] | None] | str:
  """The engine's (audio, words, phonemes), or why it failed for this sentence."""
  try:
    return voices.speak(u.speaker, u.text, u.rate, u.pitch, u.seed)
  except (RuntimeError, ValueError, OSError) as e:
    return f'{u.speaker.engine} failed: {e}'


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
      dropped = None if seconds is not None else writer.dropped_before(u)
      job = None if seconds is not None or dropped or pool is None else pool.apply_async(
          _synthesize_utterance, (u,))
      pending.append((u, seconds, job or dropped))
    u, seconds, job = pending.popleft()
    if seconds is not None:
      yield u, seconds, None
    elif isinstance(job, str):
      yield u, None, job
    else:
      yield u, None, job.get() if job is not None else _synthesize_utterance(u)


def _check(u: Utterance, result, pad_short: bool = False,
           max_seconds: float | None = MAX_SECONDS) -> str | None:
  """Returns why a synthesized utterance must be dropped, or None to keep it; one shorter than
  a receptive field is kept if `pad_short` (it will be padded), any length if `max_seconds` is
  None."""
  if isinstance(result, str):
    return result
  audio_A, words, _ = result
  if not len(audio_A):
    return 'empty audio'
  if len(audio_A) < librispeech.MIN_SAMPLES and not pad_short:
    return (f'{len(audio_A) / librispeech.SAMPLE_RATE:.2f} s {_TOO_SHORT} '
            f'({librispeech.MIN_SAMPLES / librispeech.SAMPLE_RATE:.2f} s)')
  if max_seconds is not None and len(audio_A) > max_seconds * librispeech.SAMPLE_RATE:
    return f'{len(audio_A) / librispeech.SAMPLE_RATE:.1f} s is longer than {max_seconds} s'
  if words is not None and [w['word'].upper() for w in words] != u.transcript.split():
    return f'{u.speaker.engine} words do not match the transcript'
  return None


def _padded(audio_A: np.ndarray, words: list[dict] | None, phonemes: list[dict] | None):
  """An utterance shorter than one receptive field with silence on both sides up to it (as
  the reader requires, and as `asterisk` pads a short prompt), its times moved along."""
  padded_A = librispeech.pad_to_receptive_field(audio_A)
  shift = (len(padded_A) - len(audio_A)) // 2 / librispeech.SAMPLE_RATE
  moved = lambda items: None if items is None else [
      dict(x, start=x['start'] + shift, end=x['end'] + shift) for x in items]
  return padded_A, moved(words), moved(phonemes)


def _speakers_table(speakers: Sequence[voices.Speaker]) -> str:
  rows = [';ID  |SPLIT|ENGINE|VOICE           |VARIANT']
  rows += [f'{s.id:<5}|{s.split:<5}|{s.engine:<6}|{s.voice:<16}|{s.variant}' for s in speakers]
  return '\n'.join(rows) + '\n'


def _remove_all_but(out: pathlib.Path, kept: set[str]) -> int:
  """Removes the utterances of the split folders that are not in `kept` (an earlier run with
  more hours left them), so the folder holds exactly the planned corpus; returns how many."""
  removed = set()
  for split in SPLITS:
    for trans in sorted((out / split).glob('*/*/*.trans.txt')):
      lines = dict(line.split(' ', 1) for line in trans.read_text().splitlines() if line)
      removed |= set(lines) - kept
      for suffix in ('.flac', '.timing.json'):
        for path in trans.parent.glob('*' + suffix):
          if path.name[:-len(suffix)] not in kept:
            removed.add(path.name[:-len(suffix)])
            path.unlink()
      if set(lines) - kept:
        rest = {k: v for k, v in lines.items() if k in kept}
        if rest:
          files.write_text(trans, ''.join(f'{k} {rest[k]}\n' for k in sorted(rest)))
        else:
          trans.unlink()
    for folder in sorted((out / split).glob('**/'), reverse=True):
      if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
  return len(removed)


def make_corpus(out_dir: str | os.PathLike, hours: float = 3.0, seed: int = 0,
                dev_hours: float = 0.1, test_hours: float = 0.1, *,
                num_train_speakers: int = 32, num_dev_speakers: int = 4,
                num_test_speakers: int = 4, num_workers: int = 2,
                engines: Sequence[str] = DEFAULT_ENGINES,
                held_out_engines: Sequence[str] = ('pico',),
                text_sources: Sequence[str] = sentences.DEFAULT_TEXT_SOURCES,
                short_fraction: float = 0.0, max_new_utterances: int | None = None,
                progress: bool = False) -> dict:
  """Synthesizes a corpus into out_dir, resuming whatever an earlier run left there.

  Each split gets utterances in plan order until its audio reaches the requested hours.

  Args:
    out_dir: output folder.
    hours: training audio, in hours.
    seed: seed of the sentence split, the speakers and every utterance's rate and pitch.
    dev_hours: dev audio, in hours (0 for none).
    test_hours: test audio, in hours (0 for none).
    num_train_speakers: number of training eSpeak (voice, variant) pairs.
    num_dev_speakers: number of eSpeak dev speakers, with variants unused in training.
    num_test_speakers: number of eSpeak test speakers, with variants unused elsewhere.
    num_workers: synthesis processes; 1 synthesizes in this process.
    engines: the speech engines, among `voices.ENGINES` (by default `DEFAULT_ENGINES`); one
      that cannot run here is left out with one line naming it and its voices.
    held_out_engines: engines heard only in dev and test.
    text_sources: where sentences come from, a subset of `sentences.TEXT_SOURCES`.
    short_fraction: share of the utterances of every split that say only 1 to 3 words of their
      sentence (`short_span`); with it > 0, an utterance shorter than one receptive field is
      padded with silence (`_padded`) instead of dropped. Resumed with another value, the
      utterances that differ are made again.
    max_new_utterances: stop after writing this many new utterances, leaving the corpus
      unfinished as an interruption would (for tests).
    progress: show a progress bar per split.

  Returns:
    Statistics: the corpus summary written to corpus.json, plus 'new_utterances', 'dropped'
    (and 'dropped_by_engine'),
    'removed' (utterances of an earlier, larger corpus in the folder that are not in this one),
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
      ('num_workers', num_workers, num_workers >= 1, '>= 1'),
      ('short_fraction', short_fraction, 0 <= short_fraction <= 1, 'in [0, 1]'),
      ('text_sources', list(text_sources),
       bool(text_sources) and set(text_sources) <= set(sentences.TEXT_SOURCES),
       f'some of {", ".join(sentences.TEXT_SOURCES)}')] if not ok]
  if problems:
    raise ValueError('Invalid corpus settings: ' + '; '.join(problems) + '.')
  start = time.perf_counter()
  # The text first: a missing source is named before anything is written.
  pools = split_sentences(sentences.load_sentences(text_sources), seed)
  out = files.check_writable(out_dir)
  for leftover in out.glob('**/*.tmp'):  # from an interrupted run
    leftover.unlink()

  missing = voices.missing_engines(engines)
  for engine, need in missing.items():
    print(f'Speech engine {engine} is missing (needs {need}): its voices '
          f'{", ".join(voices.ENGINES[engine].VOICES)} are left out of the corpus.')
  engines = [e for e in voices.ENGINES if e in engines and e not in missing]
  if not engines:
    raise ValueError('No speech engine can run here; see the lines above.')
  speakers = voices.choose_speakers(seed, num_train_speakers, num_dev_speakers,
                                    num_test_speakers, engines, held_out_engines)
  if not any(s.split == 'train' for s in speakers):
    raise ValueError(f'No training speakers: every engine of {engines} is held out.')
  table = _speakers_table(speakers)
  speakers_path = out / 'SPEAKERS.txt'
  if speakers_path.exists() and speakers_path.read_text() != table:
    raise ValueError(f'{out} holds a corpus with other speakers (another seed, speaker count '
                     'or set of engines); choose a new output folder.')
  files.write_text(speakers_path, table)
  targets = {'train': hours * 3600, 'dev': dev_hours * 3600, 'test': test_hours * 3600}

  pad_short = short_fraction > 0
  writer = _Writer(out, pad_short)
  summary = {'splits': {}}
  stats = {'new_utterances': 0, 'dropped': 0, 'removed': 0, 'synthesized_seconds': 0.0,
           'dropped_by_engine': dict.fromkeys(engines, 0)}
  kept: set[str] = set()
  dropped: set[str] = set()
  synthesis_start = time.perf_counter()

  def timed(result: dict) -> dict:
    now = time.perf_counter()
    return dict(result, synthesis_wall_seconds=now - synthesis_start, wall_seconds=now - start)

  pool = (multiprocessing.get_context('spawn').Pool(num_workers) if num_workers > 1 else None)
  try:
    for split in SPLITS:
      split_speakers = [s for s in speakers if s.split == split]
      plan = plan_utterances(pools[split], split_speakers, split, seed, short_fraction)
      seconds, count = 0.0, 0
      results = _in_order(plan, writer, pool, lookahead=2 * num_workers + 2)
      with tqdm.tqdm(total=round(targets[split]), unit='s', desc=split,
                     disable=not progress) as bar:
        while seconds < targets[split]:
          if stats['new_utterances'] == max_new_utterances:
            return timed(stats)
          u, duration, result = next(results)
          if result is not None:
            if reason := _check(u, result, pad_short):
              logging.log_first_n(logging.WARNING, 'Dropping %s (%r): %s (the first 5 drops are '
                                  'shown; the summary counts all).', 5, u.id, u.text, reason)
              if not isinstance(result, str):  # what the engine made: the same next time
                writer.drop(u, reason)
              dropped.add(u.id)
              stats['dropped'] += 1
              stats['dropped_by_engine'][u.speaker.engine] += 1
              continue
            audio_A, words, phonemes = _padded(*result)
            writer.write(u, audio_A, words, phonemes, padded=len(audio_A) > len(result[0]))
            duration = len(audio_A) / librispeech.SAMPLE_RATE
            stats['new_utterances'] += 1
            stats['synthesized_seconds'] += duration
          seconds += duration
          count += 1
          kept.add(u.id)
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

  writer.keep_drops(dropped)
  stats['removed'] = _remove_all_but(out, kept)
  summary.update({
      'seed': seed, 'hours': hours, 'dev_hours': dev_hours, 'test_hours': test_hours,
      'sample_rate': librispeech.SAMPLE_RATE, 'engines': {
          e: {'version': voices.ENGINES[e].version(), 'licence': voices.LICENCES[e],
              'held_out': e in held_out_engines} for e in engines},
      'python_version': sys.version.split()[0], 'text_sources': list(text_sources),
      'short_fraction': short_fraction,
      'speakers': [dataclasses.asdict(s) for s in speakers]})
  files.write_text(out / 'corpus.json', json.dumps(summary, indent=1) + '\n')
  return timed(dict(summary, **stats))


def speak_split(source_dir: str | os.PathLike, out_dir: str | os.PathLike,
                speakers: Sequence[voices.Speaker], split: str = 'human', *,
                num_workers: int = 2) -> dict:
  """The transcripts of a LibriSpeech-layout split said by `speakers`.

  With the human set as `source_dir` (`asterisk`) and a corpus's test voices as `speakers`,
  this is a control set: the human voice's words in voices whose error rates on the corpus's
  sentences are known, so that what the words cost is parted from what the voice does. Every
  speaker says every transcript at the middle of the corpus's rate and pitch ranges (noise seed:
  the utterance's number); an utterance keeps the source's chapter and number under the
  speaker's id (`9001-1-0005` said by speaker 1003 is `1003-1-0005`), so rows compare across
  voices. One shorter than one receptive field gets silence on both sides up to it, as a short
  prompt of the human set does, and none is too long (the human set keeps its longest prompts
  too); one the engine fails on, or whose words do not match, is left out and counted, as
  `make_corpus` drops it. Writes `OUT_DIR/SPLIT/SPEAKER/CHAPTER/...`
  (flac and trans.txt, without timings) and `OUT_DIR/SPEAKERS.txt`, so that evaluation reports
  each engine; a split made there before is replaced once the new one is whole.

  Args:
    source_dir: the folder holding `SPLIT/`, e.g. `make_human_set.py`'s output.
    out_dir: output folder (not `source_dir`).
    speakers: who says the transcripts, e.g. a corpus's test speakers (`voices.read_speakers`).
    split: the split of `source_dir` to say, written under the same name.
    num_workers: synthesis processes; 1 synthesizes in this process.
  Returns:
    `{'utterances', 'seconds', 'transcripts', 'dropped': {speaker id: count}}`.
  Raises:
    DataError: `source_dir` has no such split or it holds no transcripts, or `out_dir` is
      `source_dir`.
    ValueError: no speakers, or num_workers < 1.
  """
  if not speakers:
    raise ValueError('No speakers to say the transcripts.')
  if num_workers < 1:
    raise ValueError(f'num_workers must be >= 1, got {num_workers}.')
  source = pathlib.Path(source_dir)
  if not (source / split).is_dir():
    raise librispeech.DataError(f'{source / split}: no such split folder.')
  out = files.check_writable(out_dir)
  if out.resolve() == source.resolve():
    raise librispeech.DataError(f'{out}: the output folder must not be the source folder.')
  transcripts = sorted((utt_id, text) for utt_id, text, _ in
                       librispeech.read_transcripts(source / split).values())
  if not transcripts:
    raise librispeech.DataError(f'{source / split}: no transcript lines (SPEAKER-CHAPTER.trans.txt '
                                'files next to their audio) to say.')
  rate = (voices.RATE_RANGE[0] + voices.RATE_RANGE[1]) // 2
  pitch = (voices.PITCH_RANGE[0] + voices.PITCH_RANGE[1]) // 2
  plan = []
  for speaker in speakers:
    for utt_id, text in transcripts:
      _, chapter, index = (int(part) for part in utt_id.split('-'))
      plan.append(Utterance(speaker, chapter, index, text.lower(), rate, pitch, seed=index))
  # Written beside the split, which it replaces when whole (an interrupted run leaves the
  # split made before as it was).
  partial = out / f'{split}.partial'
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir()
  dropped = {str(s.id): 0 for s in speakers}
  lines = collections.defaultdict(list)
  samples = 0
  pool = multiprocessing.get_context('spawn').Pool(num_workers) if num_workers > 1 else None
  try:
    results = (pool.imap(_synthesize_utterance, plan, chunksize=4) if pool is not None
               else map(_synthesize_utterance, plan))
    for u, result in zip(plan, results):
      if reason := _check(u, result, pad_short=True, max_seconds=None):
        logging.log_first_n(logging.WARNING, 'Leaving out %s (%r): %s (the first 5 are shown; '
                            'the summary counts all).', 5, u.id, u.text, reason)
        dropped[str(u.speaker.id)] += 1
        continue
      audio_A = librispeech.pad_to_receptive_field(result[0])
      folder = partial / str(u.speaker.id) / str(u.chapter)
      folder.mkdir(parents=True, exist_ok=True)
      files.write_atomically(folder / f'{u.id}.flac', lambda tmp, a=audio_A: sf.write(
          tmp, a, librispeech.SAMPLE_RATE, format='FLAC', subtype='PCM_16'))
      lines[folder / f'{u.speaker.id}-{u.chapter}.trans.txt'].append(f'{u.id} {u.transcript}\n')
      samples += len(audio_A)
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  for path, rows in lines.items():
    files.write_text(path, ''.join(rows))
  shutil.rmtree(out / split, ignore_errors=True)
  partial.rename(out / split)
  files.write_text(out / 'SPEAKERS.txt', _speakers_table(speakers))
  return {'utterances': sum(len(rows) for rows in lines.values()),
          'seconds': round(samples / librispeech.SAMPLE_RATE, 1),
          'transcripts': len(transcripts), 'dropped': dropped}
