"""Tests of the eSpeak corpus: text normalization, synthesis timing, layout, resuming."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from navai_jax import corpus

TINY = dict(hours=0.004, seed=3, dev_hours=0.001, test_hours=0.001, num_train_speakers=3,
            num_dev_speakers=2, num_test_speakers=2, text_sources=('pydoc_topics',))


@pytest.mark.parametrize('n, words', [
    (0, 'zero'), (7, 'seven'), (15, 'fifteen'), (40, 'forty'), (42, 'forty two'),
    (100, 'one hundred'), (305, 'three hundred five'), (1000, 'one thousand'),
    (2024, 'two thousand twenty four'), (9999, 'nine thousand nine hundred ninety nine')])
def test_number_to_words(n, words):
  assert corpus.number_to_words(n) == words


@pytest.mark.parametrize('sentence, expected', [
    ("Don't stop: it's 25 degrees -- fine.", "don't stop it's twenty five degrees fine"),
    ('A built-in function (see below) is *always* available.',
     'a built in function is always available'),
    ('The "quoted" words stay.', 'the quoted words stay'),
    ('Call os.path.join here now.', None),  # dots inside a word
    ('Set the max_size value now.', None),  # underscore
    ('Return len(x) for the list.', None),  # brackets
    ('Use the fooBar method now.', None),  # camelCase
    ('An HTTP server runs here.', None),  # acronym
    ('Use str for this value.', None),  # no vowel
    ('It costs 1.5 dollars today.', None),  # not an integer
    ('There are 12000 of them.', None),  # too large to spell
    ('See the notes etc. below.', None),  # abbreviation
    ('Too short.', None),
    (' '.join(['word'] * (corpus.MAX_WORDS + 1)) + '.', None),
    ('Caf\u00e9 is not ASCII text.', None),
])
def test_normalize_text(sentence, expected):
  assert corpus.normalize_text(sentence) == expected


def test_normalize_text_keeps_commas_for_pauses():
  assert corpus.normalize_text('First, read it; then, 2 more.', keep_commas=True) == (
      'first, read it, then, two more')


def test_load_sentences_is_clean_and_sorted():
  sentences = corpus.load_sentences(('pydoc_topics',))
  assert len(sentences) > 300
  assert sentences == sorted(set(sentences))
  for s in sentences:
    assert corpus.normalize_text(s) == s.replace(',', '')


def test_synthesize_times_words_and_phonemes():
  # "of the" and "do not" are single word events in plain eSpeak; here every word gets its own.
  text = 'do not change the value of the other items, said the old man'
  audio_T, words, phonemes = corpus.synthesize(text, 'en-gb-x-rp', 'f3', rate=175, pitch=50)
  duration = len(audio_T) / corpus.SAMPLE_RATE
  assert audio_T.dtype == np.int16 and 3 < duration < 7  # about 175 words per minute
  assert [w['word'] for w in words] == text.replace(',', '').split()
  # Every word has a length (none was cut off by the end of the audio); the final pause is no word.
  assert all(w['end'] > w['start'] for w in words)
  assert words[-1]['end'] == phonemes[-1]['end'] < duration
  starts = [w['start'] for w in words]
  assert starts == sorted(starts)
  for unit in words + phonemes:
    assert 0 <= unit['start'] <= unit['end'] <= duration
  assert len(phonemes) > 2 * len(words)
  assert not any(p['phoneme'].startswith('_') for p in phonemes)
  # Phonemes tile each word: every phoneme lies inside one word.
  for p in phonemes:
    assert any(w['start'] <= p['start'] and p['end'] <= w['end'] for w in words)


def test_synthesize_is_deterministic_whatever_came_before():
  args = ('the quick brown fox jumps over the lazy dog', 'en-us', 'm2', 160, 40)
  first = corpus.synthesize(*args)
  corpus.synthesize('something else entirely, with a pause', 'en-029', 'klatt4', 200, 65)
  second = corpus.synthesize(*args)
  np.testing.assert_array_equal(first[0], second[0])
  assert first[1:] == second[1:]


def test_synthesize_rejects_unknown_variant():
  with pytest.raises(ValueError, match='variant'):
    corpus.synthesize('hello there world', 'en-us', 'nosuchvariant', 170, 50)


def test_choose_speakers_holds_out_variants():
  speakers = corpus.choose_speakers(0, num_train=32, num_dev=4, num_test=4)
  by_split = {split: [s for s in speakers if s.split == split] for split in corpus.SPLITS}
  assert [len(by_split[s]) for s in corpus.SPLITS] == [32, 4, 4]
  assert len({s.id for s in speakers}) == len(speakers)
  assert len({s.voice for s in by_split['train']}) == len(corpus.BASE_VOICES)
  train_variants = {s.variant for s in by_split['train']}
  assert not train_variants & {s.variant for s in by_split['dev'] + by_split['test']}


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
          if p.is_file()}


def test_make_corpus_layout_and_interrupted_run_equals_uninterrupted(tmp_path):
  whole = tmp_path / 'whole'
  stats = corpus.make_corpus(whole, num_workers=2, **TINY)

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

  # Every utterance is long enough for one receptive field (the data pipeline refuses less).
  for flac in whole.rglob('*.flac'):
    assert sf.info(str(flac)).frames >= corpus.MIN_SAMPLES, flac

  summary = json.loads((whole / 'corpus.json').read_text())
  assert summary['seed'] == TINY['seed']
  spoken = {}
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
        audio_T, rate = sf.read(trans.parent / f'{utterance_id}.flac', dtype='int16')
        assert rate == corpus.SAMPLE_RATE and audio_T.ndim == 1
        timing = corpus.read_timing(trans.parent / f'{utterance_id}.timing.json')
        duration = len(audio_T) / corpus.SAMPLE_RATE
        assert timing['duration'] == pytest.approx(duration)
        assert [w['word'] for w in timing['words']] == transcript.split()
        starts = [w['start'] for w in timing['words']]
        assert starts == sorted(starts)
        assert all(0 <= w['start'] <= w['end'] <= duration for w in timing['words'])
  assert not spoken['train'] & spoken['dev'] and not spoken['train'] & spoken['test']
  assert not spoken['dev'] & spoken['test']

  table = (whole / 'SPEAKERS.txt').read_text().splitlines()
  rows = [line.split('|') for line in table if not line.startswith(';')]
  split_of = {int(row[0]): row[1].strip() for row in rows}
  for split in corpus.SPLITS:
    assert {split_of[int(p.name)] for p in (whole / split).iterdir()} == {split}


def test_make_corpus_rejects_bad_settings(tmp_path):
  with pytest.raises(ValueError, match='hours must be > 0'):
    corpus.make_corpus(tmp_path, hours=0)


def test_script_reports_bad_flag():
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.make_corpus', '--hours=-1'], capture_output=True,
      text=True, cwd=pathlib.Path(__file__).parents[1], check=False)
  assert result.returncode != 0
  assert '--hours must be > 0' in result.stderr
