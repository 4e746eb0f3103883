"""Batch-norm statistics measured on a pool of speech, layer by layer ("precise" batch norm).

Training keeps each batch-norm layer's statistics as a running average (momentum
`model.bn_momentum`) of the statistics of its training batches: augmented speech, each batch
normalized by its own statistics on the way up. `precise` replaces them by the mean and
(biased) variance of each layer's conv output over every real frame of a pool of utterances,
read clean, the network in inference mode. Layer n is measured with layers 1 to n - 1 already
re-estimated, so the result is the one fixed point of "every layer's statistics are those of
its own input": one pass over the pool per batch-norm layer.

Each utterance contributes its own frame count, mean and sum of squared deviations, computed
on its real frames alone; they are merged in float64 on the host (Chan et al.'s parallel
formula). So the statistics do not depend on how the pool is batched or padded, nor on the
devices a batch is split over, beyond float32 rounding within one utterance.
"""

import functools
from typing import Any, Callable, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from navai_jax.recognizer import features
from navai_jax.recognizer import model
from navai_jax.training import parallel

Array = jax.Array
PyTree = Any
Batch = Mapping[str, np.ndarray]


@functools.lru_cache(maxsize=8)
def jit_row_moments(config: ml_collections.FrozenConfigDict, mesh: Mesh):
  """`moments(variables, audio_BxA, audio_lengths_B) -> {bn name: (count_B, mean_BxC, m2_BxC)}`.

  For every batch-norm layer, each row's real frames of the layer's conv output (inference
  mode, the running statistics of `variables`): their number, mean and sum of squared
  deviations from that mean. Jitted with variables replicated and the batch split over `mesh`.
  """
  specs = model.layer_specs(config.model)

  def moments(variables, audio_BxA, audio_lengths_B):
    x_BxTxF, frames_B = features.log_mel(audio_BxA, audio_lengths_B, config)
    _, intermediates = model.apply_inference(config, variables, x_BxTxF, frames_B=frames_B)
    mask_BxT = model.padding_mask(frames_B, x_BxTxF.shape[1])
    out = {}
    for spec in specs:
      mask_BxT = mask_BxT[:, ::spec.stride]
      if not spec.batch_norm:
        continue
      m_BxTx1 = mask_BxT[..., None].astype(jnp.float32)
      count_B = m_BxTx1.sum((1, 2))
      z_BxTxC = intermediates[spec.name]['pre']
      mean_BxC = (z_BxTxC * m_BxTx1).sum(1) / jnp.maximum(count_B, 1.0)[:, None]
      m2_BxC = (jnp.square(z_BxTxC - mean_BxC[:, None]) * m_BxTx1).sum(1)
      out[f'bn_{spec.number}'] = (count_B, mean_BxC, m2_BxC)
    return out

  sharded = parallel.batch_sharded(mesh)
  return jax.jit(moments, in_shardings=(parallel.replicated(mesh), sharded, sharded),
                 out_shardings=sharded)


def merge(count_U: np.ndarray, mean_UxC: np.ndarray, m2_UxC: np.ndarray
          ) -> tuple[float, np.ndarray, np.ndarray]:
  """Frame count, mean and sum of squared deviations of the union of U groups of frames, each
  given by its own count, mean and sum of squared deviations (float64).

  The k-way form of Chan's formula that `introspection.moments.reduce_moments` computes on
  devices; here on the host in float64, since training sits below introspection.
  """
  count_U = np.asarray(count_U, np.float64)
  mean_UxC, m2_UxC = np.asarray(mean_UxC, np.float64), np.asarray(m2_UxC, np.float64)
  n = count_U.sum()
  if n <= 0:
    raise ValueError('No real frame to measure batch-norm statistics on.')
  mean_C = (count_U[:, None] * mean_UxC).sum(0) / n
  m2_C = m2_UxC.sum(0) + (count_U[:, None] * np.square(mean_UxC - mean_C)).sum(0)
  return float(n), mean_C, m2_C


def pool_moments(config: ml_collections.ConfigDict, variables: PyTree, batches: Iterable[Batch],
                 *, mesh: Optional[Mesh] = None) -> dict[str, dict[str, Any]]:
  """`{bn name: {'frames', 'mean', 'var'}}` of every batch-norm layer's conv output over the
  real frames of every real row (weight > 0) of `batches`, under `variables`' statistics."""
  mesh = parallel.make_mesh() if mesh is None else mesh
  moments = jit_row_moments(ml_collections.FrozenConfigDict(config), mesh)
  variables = parallel.replicate(
      {'params': variables['params'], 'batch_stats': variables['batch_stats']}, mesh)
  rows = {}
  for batch in batches:
    real = np.flatnonzero(np.asarray(batch['weights']) > 0)
    device_batch = parallel.shard_batch(batch, mesh)
    out = moments(variables, device_batch['audio'], device_batch['audio_lengths'])
    for name, parts in out.items():
      rows.setdefault(name, []).append([parallel.to_host(p)[real] for p in parts])
  if not rows:
    raise ValueError('No batch to measure batch-norm statistics on.')
  result = {}
  for name, chunks in rows.items():
    n, mean_C, m2_C = merge(*(np.concatenate(part) for part in zip(*chunks)))
    result[name] = {'frames': n, 'mean': mean_C, 'var': m2_C / n}
  return result


def precise(config: ml_collections.ConfigDict, variables: PyTree,
            batches: Callable[[], Iterable[Batch]], *, mesh: Optional[Mesh] = None) -> PyTree:
  """`variables` with every batch-norm layer's statistics measured on the pool `batches()`
  yields (called once per batch-norm layer, the same utterances each time), layer by layer
  from the input up; parameters unchanged.

  Raises:
    ValueError: the pool holds no real utterance.
  """
  stats = {name: dict(s) for name, s in variables['batch_stats'].items()}
  for spec in model.layer_specs(config.model):
    if not spec.batch_norm:
      continue
    name = f'bn_{spec.number}'
    measured = pool_moments(config, {'params': variables['params'], 'batch_stats': stats},
                            batches(), mesh=mesh)[name]
    stats[name] = {'mean': jnp.asarray(measured['mean'], jnp.float32),
                   'var': jnp.asarray(measured['var'], jnp.float32)}
  return {**variables, 'batch_stats': stats}
