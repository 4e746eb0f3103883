"""Orbax checkpoints of the training state, the workdir's config.json, and loading for inference.

Layout of a workdir:

  WORKDIR/config.json            the full config of the run (written when training starts)
  WORKDIR/checkpoints/STEP/      orbax checkpoint: item 'state' (the train state pytree) and
                                 item 'meta' (JSON: training seconds so far)

Before anything is restored, the stored array shapes are checked against the config, so a
config that does not fit a checkpoint (other channel widths, say) fails with one message that
names the config values on both sides.
"""

import json
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from navai_jax.core import files
from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import data
from navai_jax.core import rules
from navai_jax.configs import default

PyTree = Any

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


def write_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
  """Writes the full config as `WORKDIR/config.json`."""
  path = Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_text(path, config.to_json(indent=2) + '\n')


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """The config of `WORKDIR/config.json`, on top of its preset's defaults.

  Fields added to the presets after the run was written keep their default values.
  """
  path = Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f'No {CONFIG_FILE} in {workdir}: not a training workdir '
                            '(experiments/train.py writes it when a run starts).')
  try:
    stored = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from None
  config = default.get_config(stored.get('preset', 'small'))
  # Sections the presets no longer have (renamed or removed) are not read.
  config.update({k: v for k, v in stored.items() if k in config})
  return config


# Fields a resumed run may change: they decide how long it trains, what it logs and how often,
# and what is done with it afterwards, not what the checkpoints hold.
SAFE_TO_CHANGE = ('train.num_steps', 'train.max_minutes', 'train.log_every',
                  'train.checkpoint_every', 'train.eval_every', 'train.tensorboard', 'data.reader',
                  'data.tfds_data_dir', 'data.read_threads', 'data.shard_speakers',
                  'eval.', 'am.', 'navai.',
                  'layer_clusters.', 'atlas.', 'attributions.')


def _flat(tree: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def check_resume(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
  """Raises ValueError listing every setting in which `config` differs from the run's
  `config.json` where the difference would change what is trained (not SAFE_TO_CHANGE)."""
  if not (Path(workdir) / CONFIG_FILE).is_file():
    return
  stored = _flat(json.loads(read_config(workdir).to_json()))
  wanted = _flat(json.loads(config.to_json()))
  changed = [f'{key}: {stored.get(key)!r} in {CONFIG_FILE}, {wanted.get(key)!r} now'
             for key in sorted(set(stored) | set(wanted))
             if stored.get(key) != wanted.get(key)
             and not any(key == s or (s.endswith('.') and key.startswith(s))
                         for s in SAFE_TO_CHANGE)]
  if changed:
    raise ValueError(f'{workdir} holds a run trained with other settings; resuming it with these '
                     f'would change what was trained: {"; ".join(changed)}. Resume with the '
                     f'run\'s own settings (those that may change: {", ".join(SAFE_TO_CHANGE)}) '
                     'or train into a new --workdir.')


def manager(workdir: str | Path, *, max_to_keep: int = 3) -> ocp.CheckpointManager:
  """Checkpoint manager of `WORKDIR/checkpoints` for training: items 'state' and 'meta'.

  Unfinished checkpoints (a run killed while writing) are never listed as steps, and are
  removed when a manager opens the directory again.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(
      Path(workdir).absolute() / CHECKPOINT_DIR, options=options,
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'meta': ocp.JsonCheckpointHandler()})


def tree_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
  """`{'/params/conv_1/kernel': shape, ...}` of a tree of arrays or array metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
          for path, leaf in leaves}


def _model_fields(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
  """The config values that parameter shapes imply (conv kernels are [K, C_in, C_out])."""
  convs = sorted(int(k.split('/')[1].split('_')[1]) for k in shapes
                 if k.startswith('params/conv_') and k.endswith('/kernel'))
  if not convs or convs != list(range(1, len(convs) + 1)):
    return {}
  first = shapes['params/conv_1/kernel']
  return {'features.num_mels': first[1], 'model.channels': first[2],
          'model.num_middle_layers': len(convs) - 4,
          'model.wide_channels': shapes[f'params/conv_{len(convs) - 2}/kernel'][2]}


def model_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Shapes of `params` and `batch_stats` that `config` gives."""
  abstract = jax.eval_shape(lambda: model.init_variables(config, jax.random.key(0)))
  return tree_shapes({'params': abstract['params'], 'batch_stats': abstract['batch_stats']})


# Parameters a training state holds beside the model's (`train.language_heads`,
# `train.engine_adversary`, `train.phoneme_head`): saved and resumed with it, never read for
# inference.
TRAINING_ONLY_PARAMS = ('language_heads', 'engine_adversary', 'phoneme_head')


def model_params(params: PyTree) -> PyTree:
  """`params` without TRAINING_ONLY_PARAMS."""
  return {k: v for k, v in params.items() if k not in TRAINING_ONLY_PARAMS}


class DoesNotFit(ValueError):
  """A checkpoint whose arrays do not have the shapes the config gives."""


def check_fits(mngr: ocp.CheckpointManager, step: int, config: ml_collections.ConfigDict) -> None:
  """Raises DoesNotFit unless the model arrays of checkpoint `step` have the config's shapes."""
  tree = mngr.item_metadata(step)['state'].tree
  stored = tree_shapes({'params': model_params(tree['params']),
                        'batch_stats': tree['batch_stats']})
  wanted = model_shapes(config)
  if stored == wanted:
    return
  where = f'Checkpoint {mngr.directory / str(step)} does not fit the config'
  have, want = _model_fields(stored), _model_fields(wanted)
  differ = [f'{name}={have[name]} in the checkpoint but {want[name]} in the config'
            for name in want if name in have and have[name] != want[name]]
  if differ:
    raise DoesNotFit(f'{where}: {"; ".join(differ)}.')
  for name in sorted(set(stored) | set(wanted)):
    if stored.get(name) != wanted.get(name):
      raise DoesNotFit(f'{where}: {name} has shape {stored.get(name)} in the checkpoint but '
                       f'{wanted.get(name)} under the config.')


def check_training_params(mngr: ocp.CheckpointManager, step: int, params: PyTree) -> None:
  """Raises DoesNotFit unless checkpoint `step` holds the TRAINING_ONLY_PARAMS that the
  training state's `params` have (each is the train setting of its name)."""
  stored = mngr.item_metadata(step)['state'].tree['params']
  for name in TRAINING_ONLY_PARAMS:
    if (name in stored) != (name in params):
      where = ('in the checkpoint but not in the config' if name in stored
               else 'in the config but not in the checkpoint')
      raise DoesNotFit(f'Checkpoint {mngr.directory / str(step)} does not fit the config: '
                       f"params['{name}'] (config.train.{name}) {where}.")


def save(mngr: ocp.CheckpointManager, step: int, state: PyTree, meta: dict[str, Any]) -> None:
  """Starts writing `state` and the JSON `meta` as checkpoint `step` (asynchronously)."""
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)))


def check_saved(mngr: ocp.CheckpointManager) -> None:
  """Raises ValueError with its reason as soon as an asynchronous save has failed."""
  try:
    mngr.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except  # whatever the writer raised
    raise ValueError(f'Saving a checkpoint into {mngr.directory} failed ({_reason(e)}); the '
                     f'latest good one is step {mngr.latest_step()}.') from None


def restore(mngr: ocp.CheckpointManager, step: int,
            abstract_state: PyTree) -> tuple[PyTree, dict[str, Any]]:
  """State and meta of checkpoint `step`, shaped and sharded like `abstract_state`."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  return restored['state'], restored['meta']


def _reason(error: Exception) -> str:
  lines = [l for l in str(error).splitlines() if l.strip()]
  return f'{type(error).__name__}: {lines[0] if lines else ""}'[:300]


def restore_latest_good(mngr: ocp.CheckpointManager, abstract_state: PyTree,
                        config: ml_collections.ConfigDict
                        ) -> tuple[Optional[int], Optional[PyTree], dict[str, Any]]:
  """`(step, state, meta)` of the latest checkpoint that reads, or `(None, None, {})` if none.

  A checkpoint that cannot be read (truncated or corrupt files) is reported with its reason
  and the one before it is tried; one that reads but does not fit `config` (its model, or the
  training-only params of `abstract_state`) raises DoesNotFit.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      check_fits(mngr, step, config)
      check_training_params(mngr, step, abstract_state.params)
      state, meta = restore(mngr, step, abstract_state)
      return step, state, meta
    except DoesNotFit:
      raise
    except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore, JSON, OS.
      damaged = mngr.directory / f'damaged-{step}'
      (mngr.directory / str(step)).rename(damaged)
      mngr.reload()
      print(f'Checkpoint {mngr.directory / str(step)} is damaged ({_reason(e)}); moved it to '
            f'{damaged} and tried the one before it.')
  if steps:
    raise ValueError(f'No checkpoint in {mngr.directory} can be read (all are damaged, moved to '
                     'damaged-STEP); train into a new --workdir.')
  return None, None, {}


# The config sections an introspection may change on a trained run; the others describe it.
INFERENCE_SECTIONS = ('am', 'navai', 'layer_clusters', 'atlas', 'attributions')
# Fields of other sections that an introspection may change too: which data it reads.
INFERENCE_FIELDS = ('data.source', 'data.reader', 'data.tfds_data_dir')


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]
                    ) -> ml_collections.ConfigDict:
  """`config` with `{'navai.split': 'train', ...}` set; only INFERENCE_SECTIONS and
  INFERENCE_FIELDS may change."""
  for path, value in overrides.items():
    section = path.partition('.')[0]
    if section not in INFERENCE_SECTIONS and path not in INFERENCE_FIELDS:
      raise ValueError(f'--config.{path}: a trained run\'s {section!r} settings describe what was '
                       f'trained and cannot change here; sections that can: '
                       f'{", ".join(INFERENCE_SECTIONS)} (and {", ".join(INFERENCE_FIELDS)}).')
    parent = config
    *parents, name = path.split('.')
    for p in parents:
      parent = parent[p]
    if name not in parent:
      raise ValueError(f'--config.{path}: no such field.')
    parent[name] = value
  return config


def load_for_inference(workdir: str | Path, step: Optional[int] = None,
                       overrides: Optional[dict[str, Any]] = None
                       ) -> tuple[ml_collections.ConfigDict, PyTree, int]:
  """Config, model variables and step of a trained run, ready for `model.apply_inference`.

  Args:
    workdir: the run's workdir (holds config.json and checkpoints/).
    step: which checkpoint; None for the latest.
    overrides: fields of the sections INFERENCE_SECTIONS (and INFERENCE_FIELDS) to set on the
      run's config.
  Returns:
    `(config, {'params': ..., 'batch_stats': ...}, step)`; the optimizer state is not read.
  Raises:
    FileNotFoundError: no config.json or no finished checkpoint in `workdir`.
    ValueError: `step` is not a checkpoint there, or the checkpoint does not fit config.json.
  """
  config = apply_overrides(read_config(workdir), overrides or {})
  rules.check(config, model.RULES, features.RULES, data.RULES)
  # The pytree handler restores a part of the saved state (the optimizer state is skipped).
  mngr = ocp.CheckpointManager(
      Path(workdir).absolute() / CHECKPOINT_DIR, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers={'state': ocp.PyTreeCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f'No finished checkpoint in {mngr.directory}.')
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise ValueError(f'No checkpoint of step {step} in {mngr.directory}; '
                     f'steps there: {", ".join(map(str, sorted(steps)))}.')
  abstract = jax.eval_shape(lambda: model.init_variables(config, jax.random.key(0)))
  wanted = {'params': abstract['params'], 'batch_stats': abstract['batch_stats']}
  try:
    check_fits(mngr, step, config)
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
        partial_restore=True)))['state']
  except DoesNotFit:
    raise
  except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore, JSON, OS.
    raise ValueError(f'Checkpoint {mngr.directory / str(step)} is damaged ({_reason(e)}); '
                     f'choose another with --step (steps there: '
                     f'{", ".join(map(str, sorted(steps)))}).') from None
  mngr.close()
  variables = jax.tree.map(jnp.asarray, restored)
  return config, variables, step
