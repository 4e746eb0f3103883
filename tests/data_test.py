"""Tests of the folder builder, its validation, the TFDS LibriSpeech path and the batches."""

import collections
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from navai_jax.core import rules
from navai_jax.recognizer import features
from navai_jax.speech import data
from navai_jax.speech import phoneme_times
from navai_jax.speech import phonemes
from navai_jax.speech import sources
from navai_jax.speech import tfds_records
from navai_jax.recognizer import vocab
from navai_jax.configs import default

WORDS = ('HELLO', 'WORLD', 'SPEECH', "DON'T", 'LETTER', 'BOOKKEEPER', 'A', 'FORMANT')


def write_chapter(split_dir: Path, speaker: int, chapter: int,
                  utterances: dict[str, np.ndarray], rate: int = 16000) -> dict[str, str]:
  """Writes FLAC files and the chapter's transcript; returns id -> transcript."""
  folder = split_dir / str(speaker) / str(chapter)
  folder.mkdir(parents=True, exist_ok=True)
  texts = {}
  for i, (utt, samples) in enumerate(sorted(utterances.items())):
    utt_id = f'{speaker}-{chapter}-{utt}'
    sf.write(folder / f'{utt_id}.flac', samples, rate, subtype='PCM_16')
    texts[utt_id] = ' '.join(WORDS[(speaker + i + j) % len(WORDS)] for j in range(1 + i % 3))
  (folder / f'{speaker}-{chapter}.trans.txt').write_text(
      ''.join(f'{k} {v}\n' for k, v in texts.items()))
  return texts


def noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
  n = int(seconds * 16000)
  tone = np.sin(2 * np.pi * rng.uniform(100, 3000) * np.arange(n) / 16000)
  return (8000 * tone + rng.normal(0, 2000, n)).clip(-32768, 32767).astype(np.int16)


def folder_config(root: Path, **data_fields) -> default.ml_collections.ConfigDict:
  config = default.get_config('tiny')
  config.data.source = f'folder:{root}'
  config.data.num_buckets = 3
  config.data.update(data_fields)
  return config


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """3 speakers, 12 training and 3 dev utterances of 1.7-3.4 s.

  Returns the folder and, per utterance id, (split, transcript, int16 samples).
  """
  root = tmp_path_factory.mktemp('corpus')
  rng = np.random.default_rng(0)
  expected = {}
  for split, per_speaker, chapter in (('train', 4, 198), ('dev', 1, 500)):
    for speaker in (19, 26, 103):
      utts = {f'{u:04d}': noise(rng, rng.uniform(1.7, 3.4)) for u in range(per_speaker)}
      texts = write_chapter(root / split, speaker, chapter + speaker % 2, utts)
      for (utt_id, text), samples in zip(texts.items(), (utts[k] for k in sorted(utts))):
        expected[utt_id] = (split, text, samples)
  return root, expected


def test_folder_round_trip(corpus):
  root, expected = corpus
  config = folder_config(root)
  for split in ('train', 'dev'):
    want = {k: v for k, v in expected.items() if v[0] == split}
    got = data.load_split(config, split)
    assert list(got.ids) == sorted(want)
    assert data.num_examples(config, split) == len(want)
    for u, utt_id in enumerate(got.ids):
      _, text, samples = want[utt_id]
      utt = got.utterance(u)
      assert utt.text == vocab.normalize(text)
      assert utt.speaker_id == int(utt_id.split('-')[0])
      assert utt.chapter_id == int(utt_id.split('-')[1])
      np.testing.assert_array_equal(utt.audio, samples.astype(np.float32) / 32768)
      assert list(got.labels[got.label_offsets[u]:got.label_offsets[u + 1]]) == vocab.encode(text)
  one = data.utterance_by_id(config, 'dev', '26-500-0000')
  np.testing.assert_array_equal(one.audio, expected['26-500-0000'][2] / 32768)
  with pytest.raises(ValueError, match='No utterance'):
    data.utterance_by_id(config, 'dev', '26-500-0099')
  with pytest.raises(data.DataError, match="No split folder 'nope'.*dev, train"):
    data.load_split(config, 'nope')
  assert (root / '_tfds').is_dir()  # The documented default place of the prepared data.


def _bad_corpus(root: Path, defect: str) -> str:
  """A one-chapter corpus with one defect; returns the file the error must name."""
  rng = np.random.default_rng(2)
  texts = write_chapter(root / 'train', 7, 1, {'0000': noise(rng, 1.8), '0001': noise(rng, 1.8)})
  chapter = root / 'train' / '7' / '1'
  trans = chapter / '7-1.trans.txt'
  lines = [f'{k} {v}' for k, v in texts.items()]
  if defect == 'corrupt':
    (chapter / '7-1-0001.flac').write_bytes(b'fLaC but not really' * 50)
    return str(chapter / '7-1-0001.flac')
  if defect == 'missing_audio':
    (chapter / '7-1-0001.flac').unlink()
    return str(chapter / '7-1-0001.flac')
  if defect == 'no_transcript_line':
    trans.write_text(lines[0] + '\n')
    return str(chapter / '7-1-0001.flac')
  if defect in ('empty_transcript', 'digits'):
    lines[1] = '7-1-0001 ' + ('' if defect == 'empty_transcript' else 'ROOM 101')
    trans.write_text('\n'.join(lines) + '\n')
    return str(trans)
  if defect == 'too_short':
    sf.write(chapter / '7-1-0001.flac', noise(rng, 1.6), 16000)
    return str(chapter / '7-1-0001.flac')
  if defect == 'sample_rate':
    sf.write(chapter / '7-1-0001.flac', noise(rng, 1.8), 22050)
    return str(chapter / '7-1-0001.flac')
  raise AssertionError(defect)


@pytest.mark.parametrize('defect, message', [
    ('corrupt', 'cannot read audio'),
    ('missing_audio', 'without audio'),
    ('no_transcript_line', 'without a transcript line'),
    ('empty_transcript', 'empty transcript'),
    ('digits', "outside the vocabulary.*'0', '1'"),
    ('too_short', 'shorter than one receptive field'),
    ('sample_rate', '22050 Hz'),
])
@pytest.mark.parametrize('reader', data.READERS)
def test_bad_folder_raises_naming_the_file(tmp_path, defect, message, reader):
  culprit = _bad_corpus(tmp_path, defect)
  with pytest.raises(data.DataError) as error:
    data.load_split(folder_config(tmp_path, reader=reader), 'train')
  assert culprit in str(error.value)
  assert re.search(message, str(error.value))


def test_fixed_folder_builds_after_an_error(tmp_path):
  culprit = _bad_corpus(tmp_path, 'corrupt')
  with pytest.raises(data.DataError):
    data.load_split(folder_config(tmp_path), 'train')
  sf.write(culprit, noise(np.random.default_rng(4), 1.8), 16000)
  assert len(data.load_split(folder_config(tmp_path), 'train')) == 2


def test_direct_reader_gives_the_tfds_split(corpus):
  root, _ = corpus
  for split in ('train', 'dev', 'dev+train'):
    via_tfds = data.load_split(folder_config(root), split)
    direct = data.load_split(folder_config(root, reader='direct'), split)
    assert direct is not via_tfds
    for field in ('ids', 'texts', 'speaker_ids', 'chapter_ids', 'lengths', 'label_offsets',
                  'labels'):
      np.testing.assert_array_equal(getattr(direct, field), getattr(via_tfds, field))
      assert getattr(direct, field).dtype == getattr(via_tfds, field).dtype, field
    assert isinstance(direct.records, sources.FlacFiles)
    assert isinstance(via_tfds.records, (tfds_records.TfdsRecords, tfds_records.Concatenated))
    for u in range(len(direct)):
      np.testing.assert_array_equal(direct.read(u), via_tfds.read(u))


def test_reader_settings_out_of_range(corpus, tmp_path):
  root, _ = corpus
  with pytest.raises(ValueError, match="Unknown data.reader 'fast'"):
    data.load_split(folder_config(root, reader='fast'), 'dev')
  with pytest.raises(ValueError, match="split 'dev\\[:50%\\]' has a slice"):
    data.load_split(folder_config(root, reader='direct'), 'dev[:50%]')
  config = folder_config(root, reader='direct')
  config.data.source = 'tfds:librispeech'
  with pytest.raises(ValueError, match="'tfds:librispeech' needs data.reader='tfds'"):
    data.load_split(config, 'dev')
  with pytest.raises(data.DataError, match='does not exist'):
    data.load_split(folder_config(tmp_path / 'nowhere', reader='direct'), 'dev')


_WITHOUT_TENSORFLOW = """
import sys
sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None  # import -> ImportError
from navai_jax.speech import data
from navai_jax.training import checkpoints, evaluate, train
from navai_jax.configs import default
config = default.get_config('tiny')
config.data.source = 'folder:' + sys.argv[1]
config.data.reader = 'direct'
print(len(data.load_split(config, 'dev')), next(iter(data.batches(config, 'train', train=True)))['audio'].shape[0])
"""


def test_training_modules_run_without_tensorflow(corpus):
  root, expected = corpus
  result = subprocess.run([sys.executable, '-c', _WITHOUT_TENSORFLOW, str(root)],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  num_dev, batch_size = map(int, result.stdout.split())
  assert num_dev == sum(v[0] == 'dev' for v in expected.values()) and batch_size >= 1


def _check_batch(batch, split, multiple):
  size, num_samples = batch['audio'].shape
  assert size % multiple == 0
  assert batch['labels'].shape == batch['label_paddings'].shape
  assert all(batch[k].shape == (size,) for k in ('audio_lengths', 'id', 'text', 'weights'))
  assert batch['audio'].dtype == np.float32 and batch['labels'].dtype == np.int32
  assert np.abs(batch['audio']).max() <= 1.0
  for row in range(size):
    real = batch['weights'][row] == 1.0
    assert real == (batch['id'][row] != '')
    n = batch['audio_lengths'][row]
    assert (batch['audio'][row, n:] == 0).all()
    pad = batch['label_paddings'][row]
    width = int((pad == 0).sum())
    assert (pad[:width] == 0).all() and (batch['labels'][row, width:] == 0).all()
    if real:
      u = split.index(batch['id'][row])
      np.testing.assert_array_equal(batch['audio'][row, :n], split.audio(u))
      assert n == split.lengths[u]
      assert vocab.decode(batch['labels'][row, :width]) == batch['text'][row] == split.texts[u]
  # Filler rows repeat the batch's first utterance, so they give finite losses.
  np.testing.assert_array_equal(batch['audio'][batch['weights'] == 0],
                                np.broadcast_to(batch['audio'][0],
                                                ((batch['weights'] == 0).sum(), num_samples)))


@pytest.mark.parametrize('multiple', [1, 4])
def test_eval_batches_hold_every_utterance_once(corpus, multiple):
  config = folder_config(corpus[0])
  split = data.load_split(config, 'train')
  seen, shapes = collections.Counter(), set()
  for batch in data.batches(config, 'train', train=False, batch_multiple=multiple):
    _check_batch(batch, split, multiple)
    seen.update(batch['id'][batch['weights'] == 1])
    shapes.add(batch['audio'].shape)
    size, num_samples = batch['audio'].shape
    assert size == multiple or size * num_samples <= config.data.batch_seconds * 16000
  assert seen == collections.Counter(split.ids)
  assert len({n for _, n in shapes}) <= config.data.num_buckets
  subset = [i for b in data.batches(config, 'train', train=False, max_utterances=4)
            for i in b['id'][b['weights'] == 1]]
  assert sorted(subset) == list(split.ids[[0, 4, 7, 11]])


def test_train_batches_resume_exactly(corpus):
  config = folder_config(corpus[0])
  split = data.load_split(config, 'train')
  run = list(itertools.islice(data.batches(config, 'train', train=True, seed=3), 40))
  for batch in run:
    _check_batch(batch, split, 1)
  # The epochs: every utterance exactly once each, in a new order.
  ids = [list(b['id'][b['weights'] == 1]) for b in run]
  flat = sum(ids, [])
  assert sorted(flat[:len(split)]) == sorted(flat[len(split):2 * len(split)]) == list(split.ids)
  assert flat[:len(split)] != flat[len(split):2 * len(split)]
  for k in (1, 7, 19):
    resumed = list(itertools.islice(
        data.batches(config, 'train', train=True, seed=3, start_step=k), 40 - k))
    for got, want in zip(resumed, run[k:], strict=True):
      assert got.keys() == want.keys()
      for key in got:
        np.testing.assert_array_equal(got[key], want[key])
  other = itertools.islice(data.batches(config, 'train', train=True, seed=4), 40)
  assert [list(b['id']) for b in other] != [list(b['id']) for b in run]


def test_sorted_epochs_go_from_short_to_long_and_resume_exactly(corpus):
  config = folder_config(corpus[0], sorted_epochs=1)
  split = data.load_split(config, 'train')
  steps = data.make_buckets(split.lengths, split.label_lengths, num_buckets=3,
                            batch_seconds=config.data.batch_seconds, batch_multiple=1)
  per_epoch = len(data.epoch_plan(steps, 3, 0))
  run = list(itertools.islice(data.batches(config, 'train', train=True, seed=3), 3 * per_epoch))
  widths = [b['audio'].shape[1] for b in run]
  # Epoch 0 from the shortest bucket to the longest, every utterance once; then shuffled.
  assert widths[:per_epoch] == sorted(widths[:per_epoch]) and len(set(widths)) > 1
  first = sum((list(b['id'][b['weights'] == 1]) for b in run[:per_epoch]), [])
  assert sorted(first) == list(split.ids)
  plain = list(itertools.islice(data.batches(folder_config(corpus[0]), 'train', train=True,
                                             seed=3), 3 * per_epoch))
  for got, want in zip(run[per_epoch:], plain[per_epoch:], strict=True):
    np.testing.assert_array_equal(got['id'], want['id'])
  assert [list(b['id']) for b in run[:per_epoch]] != [list(b['id']) for b in plain[:per_epoch]]
  k = per_epoch // 2
  resumed = itertools.islice(data.batches(config, 'train', train=True, seed=3, start_step=k),
                             len(run) - k)
  for got, want in zip(resumed, run[k:], strict=True):
    np.testing.assert_array_equal(got['audio'], want['audio'])
    np.testing.assert_array_equal(got['id'], want['id'])


def test_train_drops_long_utterances(corpus):
  config = folder_config(corpus[0], max_seconds=2.5)
  split = data.load_split(config, 'train')
  short = sorted(split.ids[split.lengths <= 2.5 * 16000])
  assert 0 < len(short) < len(split)
  epoch = itertools.islice(data.batches(config, 'train', train=True), 30)
  seen = {i for b in epoch for i in b['id'][b['weights'] == 1]}
  assert sorted(seen) == short


def test_each_row_names_its_speakers_engine(corpus):
  root = corpus[0]
  config = folder_config(root)
  config.train.engine_adversary = 0.2
  # Without engines named: every row 0, and an engine adversary is refused by name.
  batch = next(data.batches(config, 'train', train=False))
  np.testing.assert_array_equal(batch['engine'], np.zeros(len(batch['id']), np.int32))
  with pytest.raises(data.DataError, match=r"engine_adversary=0.2 needs a corpus folder whose "
                                           r"SPEAKERS.txt names each speaker's engine; no "
                                           r"speaker of 'train'"):
    next(data.batches(config, 'train', train=True))
  (root / 'SPEAKERS.txt').write_text(';ID  |SPLIT|ENGINE|VOICE|VARIANT\n'
                                     '19 | train | espeak | en-us | 0\n'
                                     '103 | train | rhvoice | slt | 0\n')
  try:
    number = {'19': data.ENGINE_IDS.index('espeak') + 1,
              '103': data.ENGINE_IDS.index('rhvoice') + 1, '26': 0}
    for batch in itertools.islice(data.batches(config, 'train', train=True), 10):
      want = [number[i.split('-')[0]] for i in data.load_split(config, 'train').ids[
          batch['index']]]
      np.testing.assert_array_equal(batch['engine'], want)
      assert batch['engine'].dtype == np.int32
  finally:
    (root / 'SPEAKERS.txt').unlink()


def test_train_engines_keep_the_speakers_of_those_engines(corpus):
  root = corpus[0]
  config = folder_config(root, train_engines=('flite',))
  with pytest.raises(data.DataError, match=r"train_engines=\('flite',\) needs a corpus folder "
                                           "whose SPEAKERS.txt names each speaker's engine"):
    next(data.batches(config, 'train', train=True))
  (root / 'SPEAKERS.txt').write_text(';ID  |SPLIT|ENGINE|VOICE|VARIANT\n'
                                     '19 | train | espeak | en-us | 0\n'
                                     '26 | train | flite | slt | 0\n'
                                     '103 | train | piper | joe | 0\n')
  try:
    epoch = itertools.islice(data.batches(config, 'train', train=True), 20)
    seen = {i for b in epoch for i in b['id'][b['weights'] == 1]}
    split = data.load_split(config, 'train')
    assert sorted(seen) == sorted(i for i in split.ids if i.startswith('26-'))
    config.data.train_engines = ('flite', 'piper')
    epoch = itertools.islice(data.batches(config, 'train', train=True), 20)
    assert {i.split('-')[0] for b in epoch for i in b['id'][b['weights'] == 1]} == {'26', '103'}
    # Evaluation reads every speaker.
    assert len({i for b in data.batches(config, 'dev', train=False) for i in b['id']}) == 3
    config.data.train_engines = ('pico',)
    with pytest.raises(data.DataError, match=r"No speaker of folder:.* split 'train' is voiced "
                                             r'by pico \(config.data.train_engines\)'):
      next(data.batches(config, 'train', train=True))
  finally:
    (root / 'SPEAKERS.txt').unlink()
  config.data.train_engines = ('mimic',)
  with pytest.raises(ValueError, match=r'config.data.train_engines must be \(\) or engines '
                                       'among espeak, flite, piper, pico, festival, mbrola'):
    rules.check(config, data.RULES)


def test_batches_reject_bad_arguments(corpus):
  config = folder_config(corpus[0])
  with pytest.raises(ValueError, match='batch_multiple'):
    next(data.batches(config, 'dev', train=False, batch_multiple=0))
  with pytest.raises(ValueError, match='start_step'):
    next(data.batches(config, 'dev', train=False, start_step=-1))
  config.data.source = 'hf:librispeech'
  with pytest.raises(ValueError, match="Unknown data source 'hf:librispeech'"):
    data.load_split(config, 'dev')


def test_tfds_source_not_prepared(tmp_path):
  config = default.get_config('tiny')
  config.data.source = 'tfds:librispeech'
  config.data.tfds_data_dir = str(tmp_path)
  with pytest.raises(data.DataError, match='not prepared'):
    data.load_split(config, 'dev')
  # An unknown name: one line with the nearest names, not TFDS's list of every dataset.
  config.data.source = 'tfds:librispeach'
  with pytest.raises(data.DataError) as error:
    data.load_split(config, 'dev')
  assert str(error.value).startswith("No TFDS dataset 'librispeach'; did you mean librispeech")
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('reader', data.READERS)
def test_transcripts_that_cannot_fit_their_audio_are_named(tmp_path, write_split, reader):
  rng = np.random.default_rng(3)
  write_split(tmp_path, 'dev', ['hello world', 'abc ' * 300],
              audio=lambda i, _: (0.1 * rng.normal(size=32000)).astype(np.float32))
  config = folder_config(tmp_path, reader=reader)
  with pytest.raises(data.DataError, match=r'1 utterance\(s\) .* 1-2-0001 needs 1199 output '
                                           r'positions \(1199 tokens\), its 2.00 s give 124'):
    data.load_split(config, 'dev')



def test_training_batches_carry_each_frames_phoneme_target(tmp_path, write_split):
  ids = write_split(tmp_path, 'train', ['bad dog', 'zebra', 'dog', 'grab'], timings=True)
  paths = {i: next(tmp_path.rglob(f'{i}.timing.json')) for i in ids}
  config = folder_config(tmp_path, num_buckets=1)
  config.train.phoneme_head = 1.0
  with pytest.raises(data.DataError, match=r"phoneme_head=1.0 needs true phoneme times in "
                                           r"ARPAbet .* no utterance of 'train' in folder:"):
    next(data.batches(config, 'train', train=True))
  for i in ids[:3]:  # the last keeps a timing file of no inventory: no targets
    times = json.loads(paths[i].read_text())
    paths[i].write_text(json.dumps({**times, 'inventory': 'arpabet', 'timed': True}))
  c = config.features
  for batch in itertools.islice(data.batches(config, 'train', train=True), 3):
    for row, u in enumerate(batch['index']):
      utt = str(data.load_split(config, 'train').ids[u])
      frames = int(features.num_frames(28800, c.window, c.hop))
      want = (phoneme_times.frame_targets(phoneme_times.read_timing(paths[utt]), frames, config)
              if utt != ids[3] else np.full(frames, -1))
      np.testing.assert_array_equal(batch['phonemes'][row, :frames], want)
      assert np.all(batch['phonemes'][row, frames:] == -1)
  # 'bad dog': /b/ (first of ARPAbet's consonants) from 0.04 s to 0.12 s, silence before it.
  first = phoneme_times.frame_targets(phoneme_times.read_timing(paths[ids[0]]), 20, config)
  centre_s = (np.arange(20) * c.hop + c.window / 2) / 16000
  np.testing.assert_array_equal(first[centre_s < 0.04], 0)
  np.testing.assert_array_equal(first[(centre_s >= 0.04) & (centre_s < 0.12)],
                                1 + phonemes.ARPABET.index('b'))
  # Each of two hosts gets its own block of rows' targets.
  whole = next(data.batches(config, 'train', train=True, seed=3, batch_multiple=2))
  size = len(whole['weights'])
  for p in range(2):
    block = next(data.batches(config, 'train', train=True, seed=3, batch_multiple=2,
                              process_index=p, process_count=2))
    np.testing.assert_array_equal(block['phonemes'],
                                  whole['phonemes'][p * size // 2:(p + 1) * size // 2])
  # Only training with a phoneme head reads them.
  assert 'phonemes' not in next(data.batches(config, 'train', train=False))
  config.train.phoneme_head = 0.0
  assert 'phonemes' not in next(data.batches(config, 'train', train=True))
