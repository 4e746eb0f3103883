"""Checkpoints: round trip, config.json, shape check naming both values, loading for inference."""

import copy
import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from navai_jax.training import checkpoints
from navai_jax.training import parallel
from navai_jax.training import train
from navai_jax.configs import default


def _state(config):
  """A train state whose arrays are all different from a fresh one."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = train.jit_init_state(ml_collections.FrozenConfigDict(config), mesh)()
  return jax.tree.map(lambda a: a + 1 if a.dtype == np.int32 else a * 1.5 + 0.25, state)


def _write_run(workdir, config, steps):
  """A workdir as training leaves it: config.json and checkpoints of `steps`."""
  checkpoints.write_config(workdir, config)
  mngr = checkpoints.manager(workdir)
  states = {}
  for step in steps:
    states[step] = jax.tree.map(lambda a: a * step, _state(config))
    checkpoints.save(mngr, step, states[step], {'elapsed_seconds': 10.0 * step})
  mngr.wait_until_finished()
  mngr.close()
  return states


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  config = default.get_config('tiny')
  config.model.bn_epsilon = 1e-3  # Not the preset's value, so config.json is really read.
  return workdir, config, _write_run(workdir, config, [3, 6])


def test_state_round_trip(run):
  workdir, config, states = run
  mngr = checkpoints.manager(workdir)
  assert mngr.all_steps() == [3, 6]
  abstract = jax.eval_shape(lambda: states[3])
  state, meta = checkpoints.restore(mngr, 3, abstract)
  assert isinstance(state, train.TrainState)
  _assert_trees_equal(state, states[3])
  assert meta == {'elapsed_seconds': 30.0}


def test_load_for_inference(run):
  workdir, config, states = run
  loaded_config, variables, step = checkpoints.load_for_inference(workdir)
  assert step == 6
  assert loaded_config.to_dict() == config.to_dict()
  assert set(variables) == {'params', 'batch_stats'}
  _assert_trees_equal(variables['params'], states[6].params)
  _assert_trees_equal(variables['batch_stats'], states[6].batch_stats)
  _, variables, step = checkpoints.load_for_inference(workdir, step=3)
  assert step == 3
  _assert_trees_equal(variables['params'], states[3].params)


def test_unknown_step_lists_the_steps(run):
  with pytest.raises(ValueError, match='No checkpoint of step 4 .*steps there: 3, 6'):
    checkpoints.load_for_inference(run[0], step=4)


def test_unfinished_checkpoint_is_not_a_step(run):
  workdir, config, _ = run
  unfinished = workdir / checkpoints.CHECKPOINT_DIR / '9.orbax-checkpoint-tmp-1700000000'
  unfinished.mkdir()
  try:
    assert checkpoints.load_for_inference(workdir)[2] == 6
  finally:
    shutil.rmtree(unfinished, ignore_errors=True)


def test_no_config_or_no_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match='No config.json in'):
    checkpoints.load_for_inference(tmp_path)
  checkpoints.write_config(tmp_path, default.get_config('tiny'))
  with pytest.raises(FileNotFoundError, match='No finished checkpoint in'):
    checkpoints.load_for_inference(tmp_path)


@pytest.mark.parametrize('field, value, message', [
    ('channels', 12, 'model.channels=8 in the checkpoint but 12 in the config'),
    ('wide_channels', 32, 'model.wide_channels=16 in the checkpoint but 32 in the config'),
    ('num_middle_layers', 7, 'model.num_middle_layers=8 in the checkpoint but 7 in the config'),
])
def test_config_that_does_not_fit_names_both_values(run, field, value, message):
  workdir, config, _ = run
  other = copy.deepcopy(config)
  other.model[field] = value
  with pytest.raises(ValueError, match=message):
    checkpoints.check_fits(checkpoints.manager(workdir), 6, other)


def test_config_json_that_does_not_fit_the_checkpoint(run, tmp_path):
  workdir, config, _ = run
  _write_run(tmp_path, config, [1])
  stored = json.loads((tmp_path / checkpoints.CONFIG_FILE).read_text())
  stored['model']['channels'] = 16
  (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(stored))
  with pytest.raises(ValueError, match='model.channels=8 in the checkpoint but 16 in the config'):
    checkpoints.load_for_inference(tmp_path)


def test_read_config_keeps_defaults_of_fields_it_lacks(tmp_path):
  config = default.get_config('small')
  config.train.learning_rate = 0.123
  stored = config.to_dict()
  del stored['eval']['num_examples']
  (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(stored))
  loaded = checkpoints.read_config(tmp_path)
  assert loaded.train.learning_rate == 0.123
  assert loaded.eval.num_examples == default.get_config('small').eval.num_examples
  (tmp_path / checkpoints.CONFIG_FILE).write_text('{"model": ')
  with pytest.raises(ValueError, match='is not valid JSON'):
    checkpoints.read_config(tmp_path)


def test_a_damaged_latest_checkpoint_is_set_aside_and_the_one_before_restored(tmp_path, capsys):
  config = default.get_config('tiny')
  states = _write_run(tmp_path, config, [3, 6])
  metadata = tmp_path / checkpoints.CHECKPOINT_DIR / '6' / 'state' / '_METADATA'
  metadata.write_text(metadata.read_text()[:100])  # truncated
  with pytest.raises(ValueError, match=r'checkpoints/6 is damaged \(.*\); choose another with '
                                       r'--step \(steps there: 3, 6\)'):
    checkpoints.load_for_inference(tmp_path)
  _, variables, step = checkpoints.load_for_inference(tmp_path, 3)
  assert step == 3
  _assert_trees_equal(variables['params'], states[3].params)
  mngr = checkpoints.manager(tmp_path)
  abstract = jax.eval_shape(lambda: _state(config))
  step, state, meta = checkpoints.restore_latest_good(mngr, abstract, config)
  assert step == 3 and meta == {'elapsed_seconds': 30.0}
  _assert_trees_equal(state.params, states[3].params)
  assert 'checkpoints/6 is damaged' in capsys.readouterr().out
  assert mngr.all_steps() == [3] and (tmp_path / checkpoints.CHECKPOINT_DIR / 'damaged-6').is_dir()
