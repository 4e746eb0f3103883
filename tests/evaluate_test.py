"""Evaluation: greedy decoding with output lengths, exact error rates of a known decode, workdirs."""

import json
import os
import re
import shutil
from pathlib import Path
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import soundfile as sf

from navai_jax.training import bn_statistics
from navai_jax.training import checkpoints
from navai_jax.speech import data
from navai_jax.training import evaluate
from navai_jax.speech import voices
from navai_jax.recognizer import features
from navai_jax.training import error_rates
from navai_jax.recognizer import lm
from navai_jax.recognizer import model
from navai_jax.training import parallel
from navai_jax.training import train
from navai_jax.recognizer import vocab
from navai_jax.configs import default


ROOT = Path(__file__).resolve().parents[1]


def _one_hot_logits(token_ids, size=vocab.SIZE):
  return np.eye(size, dtype=np.float32)[np.asarray(token_ids)]


def test_greedy_transcripts_read_only_the_output_length():
  c, a, t, blank, space = 5, 3, 22, 0, 1
  rows = [[c, c, blank, a, a, t, space, a, a],  # 'cat a' in 9 positions
          [a, blank, a, blank, t, t, c, c, c]]   # 'aat' in the first 6, then noise
  logits = _one_hot_logits(rows)
  assert evaluate.greedy_transcripts(logits, np.array([9, 6])) == ['cat a', 'aat']
  assert evaluate.greedy_transcripts(logits, np.array([3, 9])) == ['c', 'aatc']


def test_spaces_around_and_between_words_are_not_letter_errors():
  c, a, t, blank, space = 5, 3, 22, 0, 1
  row = [space, c, a, t, space, blank, space, a, space]  # ' cat  a ' before trimming
  hyps = evaluate.greedy_transcripts(_one_hot_logits([row]), np.array([len(row)]))
  assert hyps == ['cat a']
  assert error_rates.error_rates(['cat a'], hyps) == {'ler': 0.0, 'wer': 0.0}


def test_references_spell_the_labels(tones):
  batch = tones.make_batch(['bee', 'hello there'], num_samples=20000, label_width=16)
  assert evaluate.references(batch['labels'], batch['label_paddings']) == ['bee', 'hello there']


def _constant_model(config, letter):
  """Variables whose logits are the same at every position: `letter` wins everywhere.

  Every kernel is zero, so each batch-norm layer sees z = 0 and outputs its bias (0); the
  logits are the output layer's bias.
  """
  variables = model.init_variables(config, jax.random.key(0))
  params = jax.tree.map(jnp.zeros_like, variables['params'])
  bias = jnp.zeros(vocab.SIZE).at[vocab.TOKENS.index(letter)].set(5.0)
  params['conv_12']['bias'] = bias
  return {'params': params, 'batch_stats': variables['batch_stats']}


def test_known_decode_gives_exact_error_rates(tones):
  config = default.get_config('tiny')
  variables = _constant_model(config, 'a')
  # Every hypothesis is 'a'. 'cat' -> 'a': 2 edits; 'bee' -> 'a': 3 edits; 'a jazz cab' ->
  # 'a': 9 edits (the space, 'jazz', ' cab' deleted: 1 + 4 + 4). 14 edits over 16 characters.
  # Words: 'cat', 'bee' one substitution each; 'a jazz cab' two deletions: 4 over 5 words.
  batch = tones.make_batch(['cat', 'bee', 'a jazz cab', 'cat'], weights=[1, 1, 1, 0])
  result = evaluate.evaluate(config, variables, [batch], num_examples=2)
  assert result['num_utterances'] == 3
  assert result['ler'] == pytest.approx(14 / 16, abs=1e-12)
  assert result['wer'] == pytest.approx(4 / 5, abs=1e-12)
  assert result['examples'] == [{'id': '0-0-0', 'reference': 'cat', 'hypothesis': 'a'},
                                {'id': '0-0-1', 'reference': 'bee', 'hypothesis': 'a'}]


def test_per_speaker_and_per_length_error_rates(tones):
  config = default.get_config('tiny')
  batch = tones.make_batch(['cat', 'bee', 'a jazz cab', 'cat'], weights=[1, 1, 1, 0])
  batch['id'] = np.array(['7-1-0', '7-2-0', '9-1-0', ''])
  result = evaluate.evaluate(config, _constant_model(config, 'a'), [batch], num_examples=0)
  # Speaker 7: 'cat', 'bee' -> 'a': 5 edits over 6 letters, both words wrong.
  # Speaker 9: 'a jazz cab' -> 'a': 9 edits over 10 letters, 2 of 3 words wrong.
  assert result['per_speaker'] == {
      '7': {'ler': pytest.approx(5 / 6, abs=1e-12), 'wer': 1.0, 'num_utterances': 2},
      '9': {'ler': pytest.approx(9 / 10, abs=1e-12), 'wer': pytest.approx(2 / 3, abs=1e-12),
            'num_utterances': 1}}
  assert 'LER per speaker: 7 0.8333, 9 0.9000' in evaluate.summary(result)
  # By words per utterance: 'cat' and 'bee' are single words, 'a jazz cab' is three.
  assert result['per_length'] == {
      '1': {'ler': pytest.approx(5 / 6, abs=1e-12), 'wer': 1.0, 'num_utterances': 2},
      '2-3': {'ler': pytest.approx(9 / 10, abs=1e-12), 'wer': pytest.approx(2 / 3, abs=1e-12),
              'num_utterances': 1}}
  assert 'LER by words per utterance: 1 0.8333 (2), 2-3 0.9000 (1)' in evaluate.summary(result)
  assert result['per_speaker_length'] == {'7': {'1': result['per_speaker']['7']},
                                          '9': {'2-3': result['per_speaker']['9']}}
  assert '    7 by words: 1 0.8333 (2)' in evaluate.summary(result)
  assert [evaluate.length_group(r) for r in ('a', 'a b', 'a b c', 'a b c d', 'a ' * 30)] == [
      '1', '2-3', '2-3', '4+', '4+']
  # With the corpus's engines: the rates of each engine's utterances together.
  result = evaluate.evaluate(config, _constant_model(config, 'a'), [batch], num_examples=0,
                             engines={'7': 'flite', '9': 'pico'})
  assert result['per_engine'] == {
      'flite': {'ler': pytest.approx(5 / 6, abs=1e-12), 'wer': 1.0, 'num_utterances': 2},
      'pico': {'ler': pytest.approx(9 / 10, abs=1e-12), 'wer': pytest.approx(2 / 3, abs=1e-12),
               'num_utterances': 1}}
  assert 'LER per engine: flite 0.8333, pico 0.9000' in evaluate.summary(result)


def test_engines_of_speakers_read_from_the_corpus_table(tmp_path):
  (tmp_path / 'SPEAKERS.txt').write_text(';ID  |SPLIT|ENGINE|VOICE           |VARIANT\n'
                                         '139  |train|espeak|en-us           |boris\n'
                                         '1200 |test |pico  |en-US           |\n')
  assert voices.engines_of_speakers(tmp_path) == {'139': 'espeak', '1200': 'pico'}
  (tmp_path / 'SPEAKERS.txt').write_text(';ID  |SPLIT|VOICE           |VARIANT\n'
                                         '139  |train|en-us           |boris\n')
  assert voices.engines_of_speakers(tmp_path) == {}  # a corpus made before engines
  assert voices.engines_of_speakers(tmp_path / 'nothing') == {}


def test_sharded_forward_equals_one_device(tones):
  config = ml_collections.FrozenConfigDict(default.get_config('tiny'))
  variables = model.init_variables(config, jax.random.key(1))
  batch = tones.make_batch(['cat', 'dog sat', 'bee', 'hello'])
  outputs = []
  for mesh in (parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()):
    device_batch = parallel.shard_batch(batch, mesh)
    logits, lengths = evaluate.jit_forward(config, mesh)(
        parallel.replicate(variables, mesh), device_batch['audio'], device_batch['audio_lengths'])
    outputs.append((np.asarray(logits), np.asarray(lengths)))
  np.testing.assert_allclose(outputs[0][0], outputs[1][0], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
  frames = (batch['audio_lengths'] - 512) // 128 + 1
  np.testing.assert_array_equal(outputs[0][1], (frames + 1) // 2)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, write_split):
  """A run with one checkpoint of a fresh tiny model, and its corpus."""
  root = tmp_path_factory.mktemp('eval')
  write_split(root / 'corpus', 'test', ['cat', 'dog sat', 'bee', 'hello', 'quiet fox'])
  write_split(root / 'corpus', 'train', ['a cat sat', 'the bee', 'hello dog'])
  config = default.get_config('tiny')
  config.data.source = f'folder:{root / "corpus"}'
  config.eval.num_examples = 2
  checkpoints.write_config(root / 'run', config)
  mngr = checkpoints.manager(root / 'run')
  mesh = parallel.make_mesh()
  state = train.jit_init_state(ml_collections.FrozenConfigDict(config), mesh)()
  checkpoints.save(mngr, 7, state, {'elapsed_seconds': 1.0})
  mngr.wait_until_finished()
  return root / 'run'


def test_evaluate_workdir_writes_results(workdir):
  result = evaluate.evaluate_workdir(workdir, 'test')
  assert result['num_utterances'] == 5
  assert result['step'] == 7 and result['split'] == 'test'
  # The error rates of greedy transcripts made here, each utterance decoded alone at its own
  # length: the buckets the evaluation pads utterances into must not change a logit.
  config, variables, _ = checkpoints.load_for_inference(workdir)
  hyps, ids = [], []
  for flac in sorted((workdir.parent / 'corpus' / 'test').rglob('*.flac')):
    ids.append(flac.name.removesuffix('.flac'))
    audio, _ = sf.read(flac, dtype='float32')
    x, frames_B = features.log_mel(jnp.asarray(audio)[None], jnp.asarray([len(audio)]), config)
    logits, _ = model.apply_inference(config, variables, x)
    length = model.output_length(model.layer_specs(config.model), int(frames_B[0]))
    hyps.append(vocab.greedy_decode(np.asarray(logits[0]), length))
  refs = ['cat', 'dog sat', 'bee', 'hello', 'quiet fox']
  want = error_rates.error_rates(refs, hyps)
  assert result['ler'] == pytest.approx(want['ler']) and result['wer'] == pytest.approx(want['wer'])
  assert 0 < result['ler']  # an untrained model gets letters wrong: the comparison is not 0 == 0
  assert sum(result['letter_edits'].values()) == pytest.approx(result['ler'])
  assert len(result['examples']) == 2
  for name in ('eval_test.json', 'eval.json'):
    assert json.loads((workdir / name).read_text()) == json.loads(json.dumps(result))
  assert evaluate.evaluate_workdir(workdir, 'test', max_utterances=2)['num_utterances'] == 2
  every = evaluate.evaluate_workdir(workdir, 'test', num_examples=9)['examples']
  assert every == [{'id': i, 'reference': r, 'hypothesis': h} for i, r, h in zip(ids, refs, hyps)]
  assert result['examples'] == every[:2]  # the first by id
  with pytest.raises(ValueError, match='num_examples must be >= 0'):
    evaluate.evaluate_workdir(workdir, 'test', num_examples=-1)


def test_evaluate_workdir_with_a_language_model(workdir):
  settings = {'order': 3, 'alpha': 0.8, 'beta': 0.5, 'beam': 4}
  evaluate.evaluate_workdir(workdir, 'test')
  greedy = json.loads((workdir / 'eval_test.json').read_text())
  result = evaluate.evaluate_workdir(workdir, 'test', lm_settings=settings)
  assert result['decoder'] == settings and result['num_utterances'] == 5
  assert json.loads((workdir / 'eval_test_lm.json').read_text()) == json.loads(json.dumps(result))
  assert json.loads((workdir / 'eval_test.json').read_text()) == greedy  # kept as it was
  # Each utterance alone, searched with a model of the training split's transcripts.
  config, variables, _ = checkpoints.load_for_inference(workdir)
  model_lm = lm.fit([vocab.encode(s) for s in ['a cat sat', 'the bee', 'hello dog']], order=3)
  hyps = {}
  for flac in sorted((workdir.parent / 'corpus' / 'test').rglob('*.flac')):
    audio, _ = sf.read(flac, dtype='float32')
    x, frames_B = features.log_mel(jnp.asarray(audio)[None], jnp.asarray([len(audio)]), config)
    logits, _ = model.apply_inference(config, variables, x)
    length = model.output_length(model.layer_specs(config.model), int(frames_B[0]))
    logits = np.asarray(logits[0, :length], np.float64)
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    hyps[flac.stem] = vocab.decode(lm.beam_search(logprobs, model_lm, alpha=0.8, beta=0.5,
                                                  beam=4))
  for example in result['examples']:
    assert example['hypothesis'] == hyps[example['id']]
  refs = ['cat', 'dog sat', 'bee', 'hello', 'quiet fox']
  want = error_rates.error_rates(refs, [hyps[k] for k in sorted(hyps)])
  assert result['ler'] == pytest.approx(want['ler']) and result['wer'] == pytest.approx(want['wer'])


def test_a_language_model_without_its_training_transcripts_is_named(workdir, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  config = json.loads((run / 'config.json').read_text())
  config['data']['source'] = f'folder:{tmp_path / "moved"}'
  (run / 'config.json').write_text(json.dumps(config))
  corpus = workdir.parent / 'corpus'
  assert evaluate.evaluate_workdir(run, 'test', data_source=f'folder:{corpus}')['ler'] > 0
  with pytest.raises(data.DataError, match="The language model is made of the run's training "
                     rf"transcripts \(folder:{tmp_path / 'moved'}, split train\): .*moved"):
    evaluate.evaluate_workdir(run, 'test', data_source=f'folder:{corpus}',
                              lm_settings=evaluate.LM_SETTINGS)


def test_evaluate_workdir_with_the_statistics_of_a_pool(workdir):
  evaluate.evaluate_workdir(workdir, 'test')
  kept = {name: (workdir / name).read_text() for name in ('eval.json', 'eval_test.json')}
  result = evaluate.evaluate_workdir(workdir, 'test',
                                     bn_pool={'split': 'train', 'utterances': 2})
  config, variables, _ = checkpoints.load_for_inference(workdir)
  assert result['batch_stats'] == {'split': 'train', 'source': config.data.source,
                                   'utterances': 2}
  assert json.loads((workdir / 'eval_test_bn-train.json').read_text()) == json.loads(
      json.dumps(result))
  assert {name: (workdir / name).read_text() for name in kept} == kept
  # The model with the statistics of those two training utterances, read here.
  devices = jax.device_count()
  pool = lambda: data.batches(config, 'train', train=False, batch_multiple=devices,
                              max_utterances=2)
  want = evaluate.evaluate(config, bn_statistics.precise(config, variables, pool),
                           data.batches(config, 'test', train=False, batch_multiple=devices))
  assert [result['ler'], result['wer']] == pytest.approx([want['ler'], want['wer']])
  assert result['examples'] == want['examples']
  with pytest.raises(data.DataError, match="No split folder 'nope'"):
    evaluate.evaluate_workdir(workdir, 'test', bn_pool={'split': 'nope', 'utterances': 0})
  named = evaluate.evaluate_workdir(workdir, 'test', bn_pool={
      'split': 'train', 'source': config.data.source, 'utterances': 2})
  safe_source = re.sub(r'[^\w+-]', '_', config.data.source)
  name = f'eval_test_bn-{safe_source}_train.json'
  assert json.loads((workdir / name).read_text()) == json.loads(json.dumps(named))
  assert named['ler'] == result['ler']


def test_transcripts_do_not_depend_on_the_buckets(workdir):
  config, variables, _ = checkpoints.load_for_inference(workdir)
  transcripts, examples = [], []
  for buckets, batch_seconds in ((1, 8.0), (4, 8.0), (8, 2.0)):
    config.data.num_buckets, config.data.batch_seconds = buckets, batch_seconds
    make = lambda: data.batches(config, 'test', train=False, batch_multiple=4)
    transcripts.append(sorted(evaluate.transcribe(config, variables, make())))
    examples.append(evaluate.evaluate(config, variables, make(), num_examples=3)['examples'])
  assert transcripts[0] == transcripts[1] == transcripts[2]
  assert examples[0] == examples[1] == examples[2]
  assert [ex['id'] for ex in examples[0]] == [i for i, _, _ in transcripts[0][:3]]
  assert len(transcripts[0]) == 5 and any(h for _, _, h in transcripts[0])


def test_evaluate_script_prints_and_rejects_bad_input(workdir, tmp_path):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  script = [sys.executable, 'experiments/evaluate.py']
  done = subprocess.run(script + [f'--workdir={workdir}', '--split=test', '--num_examples=3'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'LER' in done.stdout and done.stdout.count('REF: ') == 3
  assert not re.search(r'^I\d{4} [\d:.]+ +\d+ \w+\.py:\d+\]', done.stderr, re.M), done.stderr  # no INFO logs
  done = subprocess.run(script + [f'--workdir={tmp_path}'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and 'No config.json in' in done.stderr
  assert 'Traceback' not in done.stderr
