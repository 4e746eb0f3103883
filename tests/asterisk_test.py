"""The human-voice split from Asterisk's prompts, on files made here in Debian's layout: what is
speech and what is not, G.722 decoded to the samples encoded, one speaker's LibriSpeech split
that the data pipeline reads, and the missing pieces named."""

import gzip
import json

import G722
import numpy as np
import pytest
import soundfile as sf

from navai_jax.speech import asterisk
from navai_jax.speech import librispeech

TRANSCRIPTS = """; Core Asterisk Sounds in English

auth-thankyou: Thank you.
conf-adminmenu: Please press 1 to mute or unmute yourself, or 8 to exit.
beep: [this is a simple beep tone]
dictate/both_help: press * to toggle pause, press # to enter a new dictation filename
confbridge-binaural-off: 3D audio disabled
agent-newlocation: Please enter a new extension, followed by pound.
missing-file: This prompt has no audio.
short: Hi.
empty: Nothing here.
long-text-short-audio: Seventeen thousand Seventeen thousand Seventeen thousand Seventeen thousand Seventeen thousand Seventeen thousand Seventeen thousand Seventeen thousand.
"""


@pytest.mark.parametrize('text, spoken', [
    ('Thank you.', 'thank you'),
    ('Please press 1 to mute, or 8 to exit.', 'please press one to mute or eight to exit'),
    ('press * to toggle pause, press # to enter', 'press star to toggle pause press pound to enter'),
    ('3D audio disabled', 'three d audio disabled'),
    ("Call-Forward on No Answer. You're next.", "call forward on no answer you're next"),
    ('[ascending tones]', None), ('', None), ('Costs $5 today.', None),
])
def test_spoken_text(text, spoken):
  assert asterisk.spoken_text(text) == spoken


def _g722(path, samples):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(bytes(G722.G722(16000, 64000).encode(samples.astype(np.int16))))


def test_make_split_writes_one_speakers_librispeech_split(tmp_path):
  sounds = tmp_path / 'sounds'
  rng = np.random.default_rng(0)
  tone = lambda seconds: (8000 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds))
                                        / 16000)).astype(np.int16)
  for name, seconds in (('auth-thankyou', 2.0), ('conf-adminmenu', 4.0), ('beep', 2.0),
                        ('dictate/both_help', 5.0), ('confbridge-binaural-off', 2.5),
                        ('agent-newlocation', 3.0), ('short', 0.5),
                        ('long-text-short-audio', 0.5), ('digits/7', 1.0)):
    _g722(sounds / f'{name}.g722', tone(seconds) + rng.integers(-50, 50, int(16000 * seconds)))
  (sounds / 'empty.g722').write_bytes(b'')  # a file that holds no audio
  with gzip.open(tmp_path / 'core-sounds-en.txt.gz', 'wt') as f:
    f.write(TRANSCRIPTS)
  # G.722 decodes to about the samples encoded (a lossy codec; a 440 Hz tone stays one).
  decoded = asterisk.decode_g722(sounds / 'auth-thankyou.g722')
  assert decoded.dtype == np.int16 and len(decoded) == 32000
  peak = np.argmax(np.abs(np.fft.rfft(decoded.astype(np.float32))))
  assert peak * 16000 / len(decoded) == pytest.approx(440, abs=1)

  summary = asterisk.make_split(tmp_path / 'human', sounds, tmp_path / 'core-sounds-en.txt.gz')
  assert summary['prompts'] == 10 and summary['utterances'] == 6
  assert summary['left_out'] == {'not speech': 1, 'no audio file': 1, 'empty audio': 1,
                                 'too short for its transcript': 1}
  # 'Hi.' (0.5 s) padded with silence to one receptive field, its tone in the middle.
  assert summary['padded_with_silence'] == 2
  assert summary['without_transcript'] == ['digits/7']
  minimum = librispeech.MIN_SAMPLES / 16000
  assert summary['seconds'] == pytest.approx(2.0 + 4.0 + 5.0 + 2.5 + 3.0 + minimum, abs=0.1)
  split = tmp_path / 'human' / 'human'
  prompts = json.loads((split / 'prompts.json').read_text())
  transcripts = librispeech.read_transcripts(split)
  texts = {utt_id: text.lower() for utt_id, text, _ in transcripts.values()}
  assert texts[next(u for u, p in prompts.items() if p == 'dictate/both_help')] == (
      'press star to toggle pause press pound to enter a new dictation filename')
  assert sorted(prompts.values()) == sorted(['agent-newlocation', 'auth-thankyou',
                                             'confbridge-binaural-off', 'conf-adminmenu',
                                             'dictate/both_help', 'short'])
  short = next(u for u, p in prompts.items() if p == 'short')
  hi, _ = sf.read(str(split / '9001' / '1' / f'{short}.flac'), dtype='int16')
  assert len(hi) == librispeech.MIN_SAMPLES
  quiet = (librispeech.MIN_SAMPLES - 8000) // 2
  assert not hi[:quiet].any() and not hi[-quiet:].any() and hi[quiet:-quiet].any()
  # The three prompts with the most words, named by prompt, to explain as recordings.
  assert sorted(p.name for p in (tmp_path / 'human' / 'examples').iterdir()) == [
      'agent-newlocation.flac', 'conf-adminmenu.flac', 'dictate_both_help.flac']
  for audio in transcripts:
    info = sf.info(str(audio))
    assert info.samplerate == 16000 and info.channels == 1


def test_missing_pieces_are_named(tmp_path):
  with pytest.raises(librispeech.DataError, match='no Asterisk sounds folder.*-g722'):
    asterisk.make_split(tmp_path / 'out', tmp_path / 'nowhere', tmp_path / 't.txt.gz')
  (tmp_path / 'sounds').mkdir()
  with pytest.raises(librispeech.DataError, match='no Asterisk transcripts.*sounds-en\\)'):
    asterisk.make_split(tmp_path / 'out', tmp_path / 'sounds', tmp_path / 't.txt.gz')
