"""A recording of one's own: any rate and channels, every letter explained with the library's maps."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import attribution
from navai_jax.stages import explain_audio


def test_explain_audio_reads_any_rate_and_channels_and_explains_every_letter(stage_run, tmp_path):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from navai_jax.recognizer import features  # pylint: disable=g-import-not-at-top
  from navai_jax.introspection import frames  # pylint: disable=g-import-not-at-top
  from navai_jax.outputs import recording  # pylint: disable=g-import-not-at-top
  _, config, variables = stage_run
  rng = np.random.default_rng(0)
  folder = tmp_path / 'recordings'
  folder.mkdir()
  left = (0.1 * rng.normal(size=48000 * 3)).astype(np.float32)
  sf.write(folder / 'me.wav', np.stack([left, 0.5 * left], 1), 48000)  # stereo, 48 kHz
  sf.write(folder / 'you.ogg', left[:66150], 22050)
  sf.write(folder / 'short.flac', left[:16000], 16000)
  sf.write(folder / 'quiet.wav', np.zeros(48000, np.float32), 16000)
  (folder / 'broken.wav').write_text('not audio')
  # Resampling keeps a tone's frequency and the duration.
  t = np.arange(48000 * 2) / 48000
  sf.write(tmp_path / 'tone.wav', np.sin(2 * np.pi * 1000 * t).astype(np.float32), 48000)
  tone, notes = recording.read_recording(str(tmp_path / 'tone.wav'), config)
  assert notes == ['resampled from 48000 Hz to 16000 Hz'] and len(tone) == 32000
  assert np.argmax(np.abs(np.fft.rfft(tone))) * 16000 / len(tone) == pytest.approx(1000, abs=1)
  done = explain_audio.run(config, variables, 7, str(folder), str(tmp_path / 'out'))
  by_name = {Path(d['path']).name: d for d in done}
  assert sorted(by_name) == ['broken.wav', 'me.wav', 'quiet.wav', 'short.flac', 'you.ogg']
  assert 'cannot be read as audio' in by_name['broken.wav']['error']
  assert 'is silent (peak all zeros)' in by_name['quiet.wav']['error']
  assert 'lasts 1.00 s; the network needs at least 1.67 s' in by_name['short.flac']['error']
  assert by_name['me.wav']['notes'] == ['2 channels mixed to mono',
                                        'resampled from 48000 Hz to 16000 Hz']
  assert by_name['you.ogg']['notes'] == ['resampled from 22050 Hz to 16000 Hz']
  # The frames are those of the resampled mono audio, with the library's maps.
  mono, _ = recording.read_recording(str(folder / 'me.wav'), config)
  x, frames_B = features.log_mel(jnp.asarray(mono)[None], jnp.asarray([len(mono)]), config)
  found = frames.collect(config, variables, x, frames_B)
  saved = np.load(tmp_path / 'out' / 'me' / 'maps.npz')
  report = json.loads((tmp_path / 'out' / 'me' / 'frames.json').read_text())
  assert len(report['frames']) == len(found) == by_name['me.wav']['frames'] > 0
  assert [f['letter'] for f in report['frames']] == found.letters
  np.testing.assert_allclose(saved['lrp'], attribution.attribute(
      'lrp', config, variables, found.windows_NxWxF, found.tokens_N, rule='paper'),
                             rtol=1e-4, atol=1e-6)
  assert (tmp_path / 'out' / 'me' / 'transcript.txt').read_text().strip() == report['transcript']
  for letter in set(found.letters):
    assert (tmp_path / 'out' / 'me' / f'maps_{letter}.png').exists()
  # One file: its problem is the error; only the asked letters are explained.
  with pytest.raises(ValueError, match='is silent'):
    explain_audio.run(config, variables, 7, str(folder / 'quiet.wav'), str(tmp_path / 'o'))
  letter = found.letters[0]
  one = explain_audio.run(config, variables, 7, str(folder / 'me.wav'),
                          str(tmp_path / 'one'), letters=[letter])
  assert one[0]['frames'] == found.letters.count(letter)
