"""How well each layer tells the engines apart: a probe trained on a layer's frozen outputs.

A layer whose frames still name the engine that voiced them (eSpeak, flite, Piper, MBROLA,
RHVoice) has not reduced the voices to what they share, and the human voice, which no engine
made, then reads as a voice of none of them. The engine adversary of training
(`train.engine_adversary`) pushes the last hidden layer toward that; a probe measures where a
model stands. Per layer, the probe (a ReLU layer of `width`, then a linear one: the adversary's
shape, `train.init_engine_classifier`) is trained with Adam on every `every`-th real frame of the
utterances of the first batches, whose speaker's engine is named (`data.engine_ids`), and read
on those of the remaining batches, other utterances of the same speakers: cross-entropy against
the prior's (each engine's share of the probe's training frames), accuracy against always
naming the commonest engine.

Voices the probes never saw are read through them (`read_on`): unheard speakers of the heard
engines (how far a probe's engine is the engine's rather than its speakers'), an engine never
heard, and a human voice: the share of their frames each layer's probe names each engine says
which of the heard voices a layer takes them for. Reading is all: nothing is trained on them.
"""

from typing import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.speech import data
from navai_jax.training import train

Array = jax.Array


def layer_frames(config: ml_collections.ConfigDict, variables, batches: Iterable[Mapping],
                 layers: Sequence[str], every: int = 4, named_only: bool = True
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """Every `every`-th real output frame of each real row whose engine is named (with
  `named_only` False: of every real row, a human voice's among them).

  Returns `({layer: float32 [N, C]}, engine int32 [N] (`engine - 1`: -1 where none is named),
  batch number int32 [N])`, the layers' outputs after batch norm and ReLU ('act', inference
  mode).
  """
  specs = model.layer_specs(config.model)

  @jax.jit
  def outputs(audio, lengths):
    x, frames = features.log_mel(audio, lengths, config)
    _, found = model.apply_inference(config, variables, x, frames_B=frames)
    return {name: found[name]['act'] for name in layers}, model.output_length(specs, frames)

  got, engines, numbers = {name: [] for name in layers}, [], []
  for number, batch in enumerate(batches):
    acts, lengths = jax.device_get(outputs(jnp.asarray(batch['audio']),
                                           jnp.asarray(batch['audio_lengths'])))
    named = (batch['engine'] > 0) | (not named_only)
    for row in np.flatnonzero((np.asarray(batch['weights']) > 0) & named):
      frames = np.arange(0, lengths[row], every)
      for name in layers:
        got[name].append(acts[name][row, frames])
      engines.append(np.full(len(frames), batch['engine'][row] - 1, np.int32))
      numbers.append(np.full(len(frames), number, np.int32))
  if not engines and named_only:
    raise data.DataError('No row of these batches names its engine; a probe needs a corpus '
                         "folder whose SPEAKERS.txt names each speaker's engine.")
  if not engines:
    raise data.DataError('These batches hold no real row.')
  return ({name: np.concatenate(v).astype(np.float32) for name, v in got.items()},
          np.concatenate(engines), np.concatenate(numbers))


def train_probe(x_NxC: np.ndarray, y_N: np.ndarray, num_classes: int, *, steps: int = 3000,
                batch_size: int = 512, learning_rate: float = 1e-3, width: int = 128,
                seed: int = 0) -> dict:
  """The probe's parameters after `steps` Adam steps on random minibatches of (x, y)."""
  init_key, order_key = jax.random.split(jax.random.key(seed))
  params = train.init_engine_classifier(init_key, x_NxC.shape[1], width, num_classes)
  optimizer = optax.adam(learning_rate)
  x_NxC, y_N = jnp.asarray(x_NxC), jnp.asarray(y_N)

  def step(carry, key):
    params, state = carry
    rows = jax.random.randint(key, (batch_size,), 0, len(y_N))
    grads = jax.grad(lambda p: cross_entropy(p, x_NxC[rows], y_N[rows]))(params)
    updates, state = optimizer.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                jax.random.split(order_key, steps))
  return params


def cross_entropy(params: dict, x_NxC: Array, y_N: Array) -> Array:
  """The probe's mean cross-entropy (nats) on frames `x` of engines `y`."""
  log_p = jax.nn.log_softmax(train.engine_logits(params, x_NxC))
  return -jnp.mean(jnp.take_along_axis(log_p, y_N[:, None], axis=-1))


def probe_layers(x: Mapping[str, np.ndarray], y_N: np.ndarray, numbers_N: np.ndarray, *,
                 read_on: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 train_fraction: float = 0.75, **settings) -> dict[str, dict]:
  """Per layer of `x` (`layer_frames`), a probe trained on the frames of the first
  `train_fraction` of the batches and read on the rest: {'cross_entropy', 'prior_cross_entropy',
  'accuracy', 'majority', 'train_frames', 'test_frames', 'train_share'} ('train_share': each
  engine of `data.ENGINE_IDS`'s share of the training frames).

  `read_on`: `{voice: {layer: frames [M, C]}}`, frames of other voices; each layer's scores then
  hold 'read_on': `{voice: {'frames': M, 'named': [share of the M frames the probe names each
  engine of data.ENGINE_IDS]}}`.
  """
  num_classes = len(data.ENGINE_IDS)
  fit = numbers_N < max(1, int(round(train_fraction * (numbers_N.max() + 1))))
  if fit.all() or not fit.any():
    raise ValueError('A probe needs frames of at least two batches (some to train it on, '
                     'others to read it on).')
  share = np.bincount(y_N[fit], minlength=num_classes) / fit.sum()
  held = y_N[~fit]
  prior = -float(np.mean(np.log(np.maximum(share[held], 1e-12))))
  scores = {}
  for name, x_NxC in x.items():
    params = train_probe(x_NxC[fit], y_N[fit], num_classes, **settings)
    logits = train.engine_logits(params, jnp.asarray(x_NxC[~fit]))
    scores[name] = {
        'cross_entropy': float(cross_entropy(params, jnp.asarray(x_NxC[~fit]), held)),
        'prior_cross_entropy': prior,
        'accuracy': float(np.mean(np.argmax(np.asarray(logits), -1) == held)),
        'majority': float(np.mean(held == np.argmax(share))),
        'train_frames': int(fit.sum()), 'test_frames': int((~fit).sum()),
        'train_share': share.tolist()}
    if read_on:
      scores[name]['read_on'] = {voice: named_shares(params, frames[name])
                                 for voice, frames in read_on.items()}
  return scores


def named_shares(params: dict, x_MxC: np.ndarray) -> dict:
  """`{'frames': M, 'named': [share of the frames the probe names each engine]}`."""
  named = np.argmax(np.asarray(train.engine_logits(params, jnp.asarray(x_MxC))), -1)
  counts = np.bincount(named, minlength=len(data.ENGINE_IDS))
  return {'frames': len(x_MxC), 'named': (counts / max(1, len(x_MxC))).tolist()}


def markdown(scores: Mapping[str, Mapping]) -> str:
  """The table of `probe_layers`' scores, one row per layer; with 'read_on', per other voice
  the share of its frames each layer's probe names each engine it was trained on or names."""
  lines = ['| layer | probe cross-entropy | prior | accuracy | commonest engine |',
           '|---|---|---|---|---|']
  for name, s in scores.items():
    lines.append(f'| {name} | {s["cross_entropy"]:.3f} | {s["prior_cross_entropy"]:.3f} | '
                 f'{s["accuracy"]:.3f} | {s["majority"]:.3f} |')
  first = next(iter(scores.values()))
  # The engines the probes were trained on, and any other one a probe names.
  shown = [k for k, share in enumerate(first['train_share'])
           if share > 0 or any(s['read_on'][voice]['named'][k] > 0 for s in scores.values()
                               for voice in s.get('read_on', {}))]
  for voice, read in first.get('read_on', {}).items():
    lines += ['', f'Frames of {voice} ({read["frames"]}) named each engine:', '',
              '| layer | ' + ' | '.join(data.ENGINE_IDS[k] for k in shown) + ' |',
              '|---|' + '---|' * len(shown)]
    for name, s in scores.items():
      named = s['read_on'][voice]['named']
      lines.append(f'| {name} | ' + ' | '.join(f'{named[k]:.3f}' for k in shown) + ' |')
  return '\n'.join(lines)
