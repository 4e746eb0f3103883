"""Your own recording: reading (channels, rates, bad samples, limits) and explaining it in
chunks of frames equal to the maps of all frames at once."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal
import soundfile as sf

from navai_jax.introspection import attribution
from navai_jax.recognizer import features
from navai_jax.introspection import frames
from navai_jax.outputs import recording


@pytest.fixture(scope='module')
def tiny(tiny_variables):
  return tiny_variables(0, jnp.float32, letter_bias=True)


def test_read_recording_mixes_resamples_and_refuses_bad_files(tiny, tmp_path):
  config, _ = tiny
  rng = np.random.default_rng(0)
  left = (0.1 * rng.normal(size=44100 * 2)).astype(np.float32)
  sf.write(tmp_path / 'stereo.wav', np.stack([left, 0.5 * left], 1), 44100, subtype='FLOAT')
  audio, notes = recording.read_recording(str(tmp_path / 'stereo.wav'), config)
  assert notes == ['2 channels mixed to mono', 'resampled from 44100 Hz to 16000 Hz']
  np.testing.assert_allclose(audio, signal.resample_poly(0.75 * left, 160, 441), atol=1e-6)
  bad = np.stack([left, left], 1)
  bad[30000, 1] = np.nan
  bad[40000, 0] = np.inf
  sf.write(tmp_path / 'nan.wav', bad, 44100, subtype='FLOAT')
  with pytest.raises(ValueError, match=r'nan.wav holds 2 NaN or infinite sample\(s\), the first '
                                       r'at sample 30000 \(0.680 s, channel 2\): nan'):
    recording.read_recording(str(tmp_path / 'nan.wav'), config)
  # A recording longer than MAX_SECONDS is refused before it is read, with the limit.
  with sf.SoundFile(tmp_path / 'long.flac', 'w', 8000, 1) as f:
    for _ in range(int(recording.MAX_SECONDS / 60) + 1):
      f.write(np.full(8000 * 60, 0.1, np.float32))
  with pytest.raises(ValueError, match=r'lasts 11.0 minutes; recordings of at most 10 minutes'):
    recording.read_recording(str(tmp_path / 'long.flac'), config)


def test_explain_in_chunks_equals_every_frame_at_once(tiny, monkeypatch):
  config, variables = tiny
  audio = (0.1 * np.random.default_rng(1).normal(size=16000 * 4)).astype(np.float32)
  monkeypatch.setattr(recording, 'MAP_CHUNK', 16)
  out = recording.explain(config, variables, audio)
  x, frames_B = features.log_mel(jnp.asarray(audio)[None], jnp.asarray([len(audio)]), config)
  found = frames.collect(config, variables, x, frames_B)
  assert len(found) > 2 * 16 and len(found) % 16  # several chunks, the last one padded
  assert out['letters'].tolist() == found.letters
  for name, options in (('sensitivity', {}), ('lrp', {'rule': 'paper'})):
    want = attribution.attribute(name, config, variables, found.windows_NxWxF, found.tokens_N,
                                 **options)
    np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out['probability'], attribution.target_probability(
      config, variables, found.windows_NxWxF, found.tokens_N), rtol=1e-6)
  assert float(np.abs(out['lrp']).max()) == pytest.approx(1.0)
