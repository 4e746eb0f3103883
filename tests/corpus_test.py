"""The synthesized corpus: held-out speakers, LibriSpeech layout, every engine's utterances with
their engine and ARPAbet times (Pico's marked untimed), short spans padded to one receptive
field with their times moved, an interrupted run equals an uninterrupted one, another set of
engines is refused, a missing engine is named, bad settings; another split's transcripts said by
chosen voices."""

import itertools
import json
import pathlib
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from navai_jax.speech import corpus
from navai_jax.speech import librispeech
from navai_jax.speech import flite
from navai_jax.speech import phoneme_times
from navai_jax.speech import phonemes
from navai_jax.speech import voices

# Every engine that runs here; Pico held out (its voices speak in dev and test only).
ENGINES = tuple(e for e in corpus.ENGINES if not voices.missing_engines([e]))
TINY = dict(hours=0.016, seed=3, dev_hours=0.005, test_hours=0.005, num_train_speakers=3,
            num_dev_speakers=2, num_test_speakers=2, text_sources=('pydoc_topics',),
            engines=ENGINES)


def test_choose_speakers_holds_out_variants():
  speakers = voices.choose_speakers(0, num_train=32, num_dev=4, num_test=4)
  by_split = {split: [s for s in speakers if s.split == split] for split in corpus.SPLITS}
  assert [len(by_split[s]) for s in corpus.SPLITS] == [32, 4, 4]
  assert len({s.id for s in speakers}) == len(speakers)
  assert len({s.voice for s in by_split['train']}) == len(voices.BASE_VOICES)
  train_variants = {s.variant for s in by_split['train']}
  assert not train_variants & {s.variant for s in by_split['dev'] + by_split['test']}


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
          if p.is_file()}


def test_make_corpus_layout_and_interrupted_run_equals_uninterrupted(tmp_path, monkeypatch):
  whole = tmp_path / 'whole'
  stats = corpus.make_corpus(whole, num_workers=2, **TINY)

  # A rerun synthesizes nothing again: not what it kept, nor what it dropped for what the
  # engine made (DROPPED.tsv; here the first utterance).
  drops, settings = tmp_path / 'drops', dict(TINY, hours=0.002, dev_hours=0, test_hours=0)
  check, first = corpus._check, []

  def dropping_the_first(u, result, pad_short):
    first[:] = first or [u.id]
    return 'a test drop' if u.id == first[0] else check(u, result, pad_short)

  with monkeypatch.context() as patch:
    patch.setattr(corpus, '_check', dropping_the_first)
    made = corpus.make_corpus(drops, num_workers=1, **settings)
  assert (drops / 'DROPPED.tsv').read_text().startswith(f'{first[0]}\t')
  saved = _files(drops)
  with monkeypatch.context() as patch:
    patch.setattr(corpus, '_synthesize_utterance', lambda u: pytest.fail(f'made {u.id} again'))
    again = corpus.make_corpus(drops, num_workers=1, **settings)
  assert made['dropped'] == again['dropped'] == 1 and again['new_utterances'] == 0
  assert _files(drops) == saved

  # An interrupted run: a few utterances, a half-written file and a lost transcript line.
  resumed = tmp_path / 'resumed'
  partial = corpus.make_corpus(resumed, num_workers=1, max_new_utterances=4, **TINY)
  assert partial['new_utterances'] == 4 and not (resumed / 'corpus.json').exists()
  trans = sorted(resumed.rglob('*.trans.txt'))[0]
  lines = trans.read_text().splitlines()
  trans.write_text(''.join(f'{line}\n' for line in lines[:-1]))
  (trans.parent / 'junk.flac.tmp').write_bytes(b'half')
  rest = corpus.make_corpus(resumed, num_workers=1, **TINY)
  assert rest['new_utterances'] == stats['new_utterances'] - 3
  assert _files(resumed) == _files(whole)

  # Fewer hours into the same folder: it ends up as a fresh corpus of that size.
  smaller = dict(TINY, hours=TINY['hours'] / 2)
  shrunk = corpus.make_corpus(resumed, num_workers=1, **smaller)
  assert shrunk['new_utterances'] == 0 and shrunk['removed'] > 0
  fresh = tmp_path / 'fresh'
  corpus.make_corpus(fresh, num_workers=1, **smaller)
  assert _files(resumed) == _files(fresh)
  assert len(list((resumed / 'train').rglob('*.flac'))) == shrunk['splits']['train']['utterances']

  # Every utterance is long enough for one receptive field (the data pipeline refuses less).
  for flac in whole.rglob('*.flac'):
    assert sf.info(str(flac)).frames >= librispeech.MIN_SAMPLES, flac

  summary = json.loads((whole / 'corpus.json').read_text())
  assert summary['seed'] == TINY['seed'] and list(summary['engines']) == list(ENGINES)
  assert summary['engines']['pico']['held_out']
  spoken, engines = {}, {}
  for split in corpus.SPLITS:
    assert summary['splits'][split]['hours'] >= TINY[f'{split}_hours' if split != 'train'
                                                   else 'hours']
    spoken[split] = set()
    for trans in (whole / split).glob('*/*/*.trans.txt'):
      speaker, chapter = trans.parent.parent.name, trans.parent.name
      assert trans.name == f'{speaker}-{chapter}.trans.txt'
      for line in trans.read_text().splitlines():
        utterance_id, transcript = line.split(' ', 1)
        assert utterance_id.startswith(f'{speaker}-{chapter}-') and len(utterance_id) == (
            len(speaker) + len(chapter) + 6)
        assert transcript == transcript.upper()
        spoken[split].add(transcript)
        audio_A, rate = sf.read(trans.parent / f'{utterance_id}.flac', dtype='int16')
        assert rate == librispeech.SAMPLE_RATE and audio_A.ndim == 1
        times = phoneme_times.read_timing(trans.parent / f'{utterance_id}.timing.json')
        duration = len(audio_A) / librispeech.SAMPLE_RATE
        assert times['duration'] == pytest.approx(duration)
        engines[times['engine']] = engines.get(times['engine'], 0) + 1
        if times['engine'] not in voices.TIMED:  # Pico, Kokoro
          assert not times['timed'] and times['words'] is None and times['phonemes'] is None
          continue
        assert times['timed'] and {p['phoneme'] for p in times['phonemes']} <= set(
            phonemes.ARPABET)
        assert [w['word'] for w in times['words']] == transcript.split()
        starts = [w['start'] for w in times['words']]
        assert starts == sorted(starts)
        assert all(0 <= w['start'] <= w['end'] <= duration for w in times['words'])
  assert not spoken['train'] & spoken['dev'] and not spoken['train'] & spoken['test']
  assert not spoken['dev'] & spoken['test']
  assert set(engines) == set(ENGINES)  # every engine spoke
  # Pico's, Kokoro's and RHVoice's utterances have no times: not among the timed utterances.
  untimed = {p.name for p in whole.rglob('*.timing.json') if re.match(r'1[246]\d\d-', p.name)}
  timed = {pathlib.Path(p).name for p in phoneme_times.find_timings(
      types.SimpleNamespace(data=types.SimpleNamespace(source=f'folder:{whole}'))).values()}
  assert untimed and not untimed & timed

  table = (whole / 'SPEAKERS.txt').read_text().splitlines()
  rows = [line.split('|') for line in table if not line.startswith(';')]
  split_of = {int(row[0]): row[1].strip() for row in rows}
  for split in corpus.SPLITS:
    assert {split_of[int(p.name)] for p in (whole / split).iterdir()} == {split}


def test_short_fraction_of_utterances_say_a_span_of_their_sentence():
  pool = [f'w{k}a, w{k}b w{k}c w{k}d w{k}e w{k}f' for k in range(1000)]
  speakers = [s for s in voices.choose_speakers(0, 4, 1, 1) if s.split == 'train']
  plan = list(itertools.islice(corpus.plan_utterances(pool, speakers, 'train', 0, 0.2), 1000))
  whole = list(itertools.islice(corpus.plan_utterances(pool, speakers, 'train', 0), 1000))
  assert [(u.rate, u.pitch, u.seed) for u in plan] == [(u.rate, u.pitch, u.seed) for u in whole]
  assert all(len(u.text.split()) == 6 for u in whole)  # by default every sentence is whole
  short = [u for u in plan if len(u.text.split()) <= corpus.SHORT_WORDS[1]]
  assert abs(len(short) - 200) < 40  # binomial(1000, 0.2): sd 12.6
  assert {len(u.text.split()) for u in short} == {1, 2, 3}
  for u in short:  # consecutive words of the sentence it stands for, without commas
    k = int(u.text.split()[0][1:-1])
    assert ',' not in u.text and f' {u.text} ' in f" {pool[k].replace(',', '')} "
  # The rest say their sentence whole; the same seed plans the same utterances.
  assert sorted(u.text for u in plan if u not in short) == sorted(
      s for s in pool if s not in {pool[int(u.text.split()[0][1:-1])] for u in short})
  assert plan == list(itertools.islice(
      corpus.plan_utterances(pool, speakers, 'train', 0, 0.2), 1000))


def test_a_short_utterance_is_padded_with_silence_and_its_times_move_along():
  audio_A = np.arange(1, 8001, dtype=np.int16)
  words = [{'word': 'hi', 'start': 0.1, 'end': 0.4}]
  phones = [{'phoneme': 'HH', 'start': 0.1, 'end': 0.2}, {'phoneme': 'AY', 'start': 0.2,
                                                           'end': 0.4}]
  padded_A, padded_words, padded_phones = corpus._padded(audio_A, words, phones)
  left = (librispeech.MIN_SAMPLES - 8000) // 2
  assert len(padded_A) == librispeech.MIN_SAMPLES
  np.testing.assert_array_equal(padded_A[left:left + 8000], audio_A)
  assert not padded_A[:left].any() and not padded_A[left + 8000:].any()
  shift = left / librispeech.SAMPLE_RATE
  assert padded_words == [{'word': 'hi', 'start': 0.1 + shift, 'end': 0.4 + shift}]
  assert [p['start'] - shift for p in padded_phones] == pytest.approx([0.1, 0.2])
  assert corpus._padded(audio_A, None, None)[1:] == (None, None)  # untimed (Pico)
  long_A = np.ones(librispeech.MIN_SAMPLES + 1, np.int16)
  kept_A, kept_words, kept_phones = corpus._padded(long_A, words, phones)
  np.testing.assert_array_equal(kept_A, long_A)
  assert (kept_words, kept_phones) == (words, phones)


def test_short_utterances_are_padded_and_a_corpus_resumed_with_another_share_is_redone(
    tmp_path, monkeypatch):
  # Sentences of three short words (under one receptive field) among long ones.
  texts = [f'{w} the {w}s' for w in 'get copy find set move'.split()] + [
      f'the {w} of the module returns a list of names in the order they were given'
      for w in 'name value size path list'.split()]
  monkeypatch.setattr(corpus.sentences, 'load_sentences', lambda sources: texts * 4)
  settings = dict(TINY, hours=0.008, dev_hours=0, test_hours=0, num_workers=1,
                  engines=('espeak',))
  mixed, whole = tmp_path / 'mixed', tmp_path / 'whole'
  assert corpus.make_corpus(mixed, short_fraction=0.5, **settings)['short_fraction'] == 0.5
  timings = [phoneme_times.read_timing(p) for p in mixed.rglob('*.timing.json')]
  padded = [t for t in timings if t.get('padded')]
  assert padded and any(len(t['words']) <= corpus.SHORT_WORDS[1] for t in timings)
  for t in padded:
    assert t['duration'] == librispeech.MIN_SAMPLES / librispeech.SAMPLE_RATE
    assert 0 < t['words'][0]['start'] and t['words'][-1]['end'] < t['duration']
  assert any(len(t['words']) == 3 for t in padded)  # a whole sentence, padded
  saved_mixed = _files(mixed)
  corpus.make_corpus(whole, **settings)
  assert 'is shorter than one receptive field' in (whole / 'DROPPED.tsv').read_text()
  saved_whole = _files(whole)
  assert not any(phoneme_times.read_timing(p).get('padded') for p in whole.rglob('*.timing.json'))
  # Resumed with the other share, each folder ends as a fresh corpus of that share: no padded
  # utterance left among whole sentences, no drop of a short one kept where they are padded.
  corpus.make_corpus(mixed, **settings)
  assert _files(mixed) == saved_whole
  corpus.make_corpus(whole, short_fraction=0.5, **settings)
  assert _files(whole) == saved_mixed


def test_make_corpus_rejects_bad_settings_other_engines_and_names_a_missing_one(
    tmp_path, monkeypatch, capsys):
  with pytest.raises(ValueError, match='hours must be > 0'):
    corpus.make_corpus(tmp_path, hours=0)
  with pytest.raises(ValueError, match=r'short_fraction must be in \[0, 1\], got 1.5'):
    corpus.make_corpus(tmp_path, short_fraction=1.5)
  with pytest.raises(ValueError, match=r"text_sources must be some of pydoc_topics, .*, got "
                     r"\['pydoc_topics', 'poems'\]"):
    corpus.make_corpus(tmp_path / 'poems', text_sources=('pydoc_topics', 'poems'))
  assert not (tmp_path / 'poems').exists()  # refused before anything is written
  settings = dict(TINY, hours=0.001, dev_hours=0, test_hours=0, num_workers=1)
  corpus.make_corpus(tmp_path / 'espeak', **dict(settings, engines=('espeak',)))
  with pytest.raises(ValueError, match='another seed, speaker count or set of engines'):
    corpus.make_corpus(tmp_path / 'espeak', **dict(settings, engines=('espeak', 'pico')))
  monkeypatch.setattr(flite, 'available', lambda: False)
  corpus.make_corpus(tmp_path / 'no_flite', **dict(settings, engines=('espeak', 'flite')))
  assert ("Speech engine flite is missing (needs the 'flite' program (Debian package flite)): "
          'its voices kal, kal16, awb, rms, slt are left out of the corpus.'
          ) in capsys.readouterr().out
  assert 'flite' not in (tmp_path / 'no_flite' / 'SPEAKERS.txt').read_text()


def test_speak_split_says_every_transcript_in_every_voice(tmp_path, monkeypatch):
  # A human-set-like source: one prompt of one word, one sentence.
  chapter = tmp_path / 'source' / 'human' / '9001' / '1'
  chapter.mkdir(parents=True)
  (chapter / '9001-1.trans.txt').write_text('9001-1-0000 HELLO\n'
                                            '9001-1-0007 PLEASE LEAVE A MESSAGE AFTER THE TONE\n')
  for utt_id in ('9001-1-0000', '9001-1-0007'):
    sf.write(chapter / f'{utt_id}.flac', np.zeros(librispeech.MIN_SAMPLES, np.int16),
             librispeech.SAMPLE_RATE)
  said = voices.choose_speakers(0, num_train=1, num_dev=1, num_test=2)[-2:]  # eSpeak's test
  assert [s.split for s in said] == ['test', 'test']
  spoken = []

  def speak(speaker, text, rate, pitch, seed):
    spoken.append((speaker.id, text, rate, pitch, seed))
    if speaker.id == said[1].id and seed == 7:
      raise RuntimeError('an engine failing for one sentence')
    return real_speak(speaker, text, rate, pitch, seed)

  real_speak = voices.speak
  monkeypatch.setattr(voices, 'speak', speak)
  out = tmp_path / 'voices'
  (out / 'human' / 'old').mkdir(parents=True)  # a split made before is replaced
  summary = corpus.speak_split(tmp_path / 'source', out, said, num_workers=1)
  assert summary['transcripts'] == 2 and summary['utterances'] == 3
  assert summary['dropped'] == {str(said[0].id): 0, str(said[1].id): 1}
  assert sorted(spoken) == sorted(
      (s.id, t, 175, 50, n) for s in said
      for n, t in ((0, 'hello'), (7, 'please leave a message after the tone')))
  split = librispeech.read_transcripts(out / 'human')
  assert sorted((i, t) for i, t, _ in split.values()) == sorted([
      (f'{said[0].id}-1-0000', 'HELLO'), (f'{said[0].id}-1-0007',
                                          'PLEASE LEAVE A MESSAGE AFTER THE TONE'),
      (f'{said[1].id}-1-0000', 'HELLO')])
  assert not (out / 'human' / 'old').exists() and not (out / 'human.partial').exists()
  for path, (utt_id, _, _) in split.items():
    audio, rate = sf.read(path, dtype='int16')
    assert rate == librispeech.SAMPLE_RATE and len(audio) >= librispeech.MIN_SAMPLES
    if utt_id.endswith('-0000'):  # the lone word: silence added on both sides
      assert not audio[:100].any() and not audio[-100:].any()
  assert voices.read_speakers(out) == said
  long_prompt = corpus.Utterance(said[0], 1, 0, 'hello', 175, 50, 0)
  result = (np.ones(13 * librispeech.SAMPLE_RATE, np.int16), None, None)
  assert corpus._check(long_prompt, result, True) == '13.0 s is longer than 12.0 s'
  assert corpus._check(long_prompt, result, True, max_seconds=None) is None  # as speak_split
  assert voices.engines_of_speakers(out) == {str(s.id): 'espeak' for s in said}
  with pytest.raises(librispeech.DataError, match='must not be the source'):
    corpus.speak_split(tmp_path / 'source', tmp_path / 'source', said, num_workers=1)
  with pytest.raises(librispeech.DataError, match='no such split'):
    corpus.speak_split(tmp_path / 'source', out, said, 'test', num_workers=1)
  (tmp_path / 'source' / 'empty').mkdir()
  with pytest.raises(librispeech.DataError, match='empty: no transcript lines'):
    corpus.speak_split(tmp_path / 'source', out, said, 'empty', num_workers=1)
  # The script names a speaker the corpus does not have.
  done = subprocess.run(
      [sys.executable, '-m', 'experiments.speak_human_set', f'--source={tmp_path / "source"}',
       f'--corpus={out}', '--speakers=test,9999', f'--out_dir={tmp_path / "again"}'],
      capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1], check=False)
  assert done.returncode != 0
  assert '--speakers: 9999 is neither a split nor a speaker of' in done.stderr


def test_script_reports_bad_flag():
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.make_corpus', '--hours=-1'], capture_output=True,
      text=True, cwd=pathlib.Path(__file__).parents[1], check=False)
  assert result.returncode != 0
  assert '--hours must be > 0' in result.stderr
