"""The engine probe: a known answer on made-up frames, the frames it reads, and its script."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from navai_jax.introspection import engine_probe
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import asterisk
from navai_jax.speech import data


def _frames(rng, n, informative):
  """n frames of 16 channels over batches 0-3; engines 0-2, two thirds of them engine 0."""
  y = rng.choice(3, size=n, p=[2 / 3, 1 / 6, 1 / 6]).astype(np.int32)
  x = rng.normal(size=(n, 16)).astype(np.float32)
  if informative:
    x[np.arange(n), y] += 4.0
  return {'layer': x}, y, np.repeat(np.arange(4), n // 4).astype(np.int32)


def test_a_probe_reads_the_engine_where_the_frames_carry_it_and_the_prior_where_not():
  rng = np.random.default_rng(0)
  settings = {'steps': 400, 'batch_size': 256}
  x, y, numbers = _frames(rng, 4000, informative=True)
  # Other voices read through the probe: one that carries engine 1's mark, one engine 2's.
  others = {f'like {k}': {'layer': rng.normal(size=(300, 16)).astype(np.float32)}
            for k in (1, 2)}
  for k in (1, 2):
    others[f'like {k}']['layer'][:, k] += 4.0
  told = engine_probe.probe_layers(x, y, numbers, read_on=others, **settings)['layer']
  for k in (1, 2):
    read = told['read_on'][f'like {k}']
    assert read['frames'] == 300 and len(read['named']) == len(data.ENGINE_IDS)
    assert read['named'][k] > 0.95 and sum(read['named']) == pytest.approx(1.0)
  x, y, numbers = _frames(rng, 4000, informative=False)
  blind = engine_probe.probe_layers(x, y, numbers, **settings)['layer']
  # The prior: each engine's share of the first three batches' frames, read on the fourth's.
  share = np.bincount(y[numbers < 3], minlength=len(data.ENGINE_IDS)) / np.sum(numbers < 3)
  assert blind['prior_cross_entropy'] == pytest.approx(
      -np.mean(np.log(share[y[numbers == 3]])), rel=1e-6)
  assert blind['train_frames'] == 3000 and blind['test_frames'] == 1000
  assert told['accuracy'] > 0.95 and told['cross_entropy'] < 0.2
  np.testing.assert_allclose(blind['train_share'], share)
  # Frames without the engine: no probe beats the prior (it can only overfit its own frames).
  assert blind['cross_entropy'] > blind['prior_cross_entropy'] - 0.02
  assert blind['accuracy'] < blind['majority'] + 0.03
  with pytest.raises(ValueError, match='at least two batches'):
    engine_probe.probe_layers(x, y, np.zeros_like(numbers), **settings)


def test_the_frames_are_the_layers_outputs_of_the_rows_with_an_engine(tones, tiny_variables):
  config, variables = tiny_variables(1, jnp.float32)
  batch = tones.make_batch(['cat', 'bee', 'hello', 'a jazz cab'], weights=[1, 1, 1, 0])
  batch['engine'] = np.array([2, 0, 5, 3], np.int32)  # row 1 unnamed, row 3 a filler
  names = [model.layer_specs(config.model)[k].name for k in (0, -2)]
  x, engines, numbers = engine_probe.layer_frames(config, variables, [batch, batch], names,
                                                  every=3)
  feats, frames = features.log_mel(batch['audio'], batch['audio_lengths'], config)
  _, layers = model.apply_inference(config, variables, feats, frames_B=frames)
  lengths = np.asarray(model.output_length(model.layer_specs(config.model), frames))
  kept = [(row, u) for row in (0, 2) for u in range(0, lengths[row], 3)]
  for name in names:
    want = np.stack([np.asarray(layers[name]['act'])[row, u] for row, u in kept])
    np.testing.assert_allclose(x[name], np.concatenate([want, want]), rtol=1e-5, atol=1e-6)
  want_engines = [batch['engine'][row] - 1 for row, _ in kept]
  np.testing.assert_array_equal(engines, want_engines * 2)
  np.testing.assert_array_equal(numbers, [0] * len(kept) + [1] * len(kept))
  # Every real row, a voice without an engine among them (engine -1): the human voice's way.
  every_row, engines, _ = engine_probe.layer_frames(config, variables, [batch], names, every=3,
                                                    named_only=False)
  kept = [(row, u) for row in (0, 1, 2) for u in range(0, lengths[row], 3)]
  np.testing.assert_allclose(
      every_row[names[0]], np.stack([np.asarray(layers[names[0]]['act'])[row, u]
                                     for row, u in kept]), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(engines, [batch['engine'][row] - 1 for row, _ in kept])
  with pytest.raises(data.DataError, match="names its engine; a probe needs a corpus folder"):
    engine_probe.layer_frames(config, variables, [{**batch, 'engine': np.zeros(4, np.int32)}],
                              names)


def test_the_script_probes_each_layer_and_names_an_unknown_one(
    tmp_path, tiny_variables, write_split, saved_run, run_script):
  corpus = tmp_path / 'corpus'
  rng = np.random.default_rng(0)
  for speaker, scale in ((19, 0.05), (26, 0.3)):  # two engines, two loudnesses
    write_split(corpus, 'train', ['cat sat', 'a dog', 'bee', 'hello you', 'so far'] * 2,
                speaker=speaker,
                audio=lambda i, text, s=scale: (s * rng.normal(size=32000)).astype(np.float32))
  for speaker, scale in ((27, 0.05), (32, 0.2)):  # an unheard espeak speaker, unheard pico
    write_split(corpus, 'test', ['cat', 'a dog sat'], speaker=speaker,
                audio=lambda i, text, s=scale: (s * rng.normal(size=32000)).astype(np.float32))
  write_split(tmp_path / 'human', asterisk.SPLIT, ['hello', 'so far'], speaker=1,
              audio=lambda i, text: (0.1 * rng.normal(size=32000)).astype(np.float32))
  (corpus / 'SPEAKERS.txt').write_text(';ID  |SPLIT|ENGINE|VOICE|VARIANT\n'
                                       '19 | train | espeak | en-us | 0\n'
                                       '26 | train | flite | slt | 0\n'
                                       '27 | test | espeak | en-gb | 0\n'
                                       '32 | test | pico | en-US | 0\n')
  config, variables = tiny_variables(0, jnp.float32)
  config.data.source, config.data.reader = f'folder:{corpus}', 'direct'
  saved_run(tmp_path / 'run', config, variables)
  names = [spec.name for spec in model.layer_specs(config.model)]
  done = run_script('engine_probe', tmp_path / 'run', f'--layers={names[0]},{names[-2]}',
                    '--batches=4', '--steps=50', f'--human_dir={tmp_path / "human"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'| {names[-2]} |' in done.stdout
  assert 'Frames of the human voice (' in done.stdout
  written = json.loads((tmp_path / 'run' / 'engine_probe' / 'engine_probe.json').read_text())
  assert list(written['layers']) == [names[0], names[-2]] and written['step'] == 3
  assert all(0 <= s['accuracy'] <= 1 for s in written['layers'].values())
  read = written['layers'][names[-2]]['read_on']
  assert list(read) == ['espeak (test: unheard speakers)', 'pico (test: unheard engine)',
                        'the human voice']
  for voice in read.values():
    assert voice['frames'] > 0 and sum(voice['named']) == pytest.approx(1.0)
  done = run_script('engine_probe', tmp_path / 'run', f'--layers={names[-1]}')
  assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
      f'engine_probe.py: --layers: no hidden layer {names[-1]}; the hidden layers are '
      f'{", ".join(names[:-1])}.')
