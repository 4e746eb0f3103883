"""Greedy decoding of a whole split and its letter and word error rates (SPEC §3); or beam
search with a token language model of the run's training transcripts (`recognizer.lm`).

The forward pass runs batch norm in inference mode with SAME padding over whole utterances,
jitted once per batch shape and split over the devices like training batches. The data
pipeline pads evaluation batches to its length buckets, so a split compiles a few shapes.
Filler rows (weight 0) are dropped before scoring.
"""

import collections
import functools
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import jax
from jax.sharding import Mesh
import ml_collections
import numpy as np
import scipy.special

from navai_jax.core import rules
from navai_jax.training import bn_statistics
from navai_jax.training import checkpoints
from navai_jax.speech import data
from navai_jax.speech import voices
from navai_jax.recognizer import features
from navai_jax.core import files
from navai_jax.training import error_rates
from navai_jax.recognizer import lm
from navai_jax.recognizer import model
from navai_jax.training import parallel
from navai_jax.recognizer import vocab

PyTree = Any

RULES = {'eval': [
    ('max_utterances', lambda v: v >= 0, '>= 0 (0 = all)'),
    ('num_examples', *rules.at_least(0)),
]}


@functools.lru_cache(maxsize=8)
def jit_forward(config: ml_collections.FrozenConfigDict, mesh: Mesh):
  """`forward(variables, audio_BxA, audio_lengths_B) -> (logits_BxUxV, output_lengths_B)`.

  Jitted with variables replicated and the batch split over `mesh`; cached per (config, mesh)
  so repeated evaluations during training reuse the compiled function.
  """
  specs = model.layer_specs(config.model)

  def forward(variables, audio_BxA, audio_lengths_B):
    x_BxTxF, frames_B = features.log_mel(audio_BxA, audio_lengths_B, config)
    logits_BxUxV, _ = model.apply_inference(config, variables, x_BxTxF, frames_B=frames_B)
    return logits_BxUxV, model.output_length(specs, frames_B)

  data_sharding = parallel.batch_sharded(mesh)
  return jax.jit(forward, in_shardings=(parallel.replicated(mesh), data_sharding, data_sharding),
                 out_shardings=(data_sharding, data_sharding))


# Groups of `per_length` by words in the reference (isolated words, short phrases, sentences),
# each with the most words it holds.
LENGTH_GROUPS = (('1', 1), ('2-3', 3), ('4+', None))


def length_group(reference: str) -> str:
  """The LENGTH_GROUPS name of a reference transcript (by its number of words)."""
  n = len(reference.split())
  return next(name for name, most in LENGTH_GROUPS if most is None or n <= most)


def _rates_by(rows: Sequence[tuple[str, str, str]], counts: Sequence[Mapping[str, int]],
              group: Callable[[str, str], str], order: Optional[Callable[[str], Any]] = None
              ) -> dict[str, dict[str, float]]:
  """`{'ler', 'wer', 'num_utterances'}` of each group of `(id, reference, hypothesis)` rows (their
  `error_rates.pair_counts` beside them), `group(id, reference)` naming a row's group; groups
  sorted by `order` (default: name)."""
  groups = collections.defaultdict(list)
  for (i, r, _), c in zip(rows, counts):
    groups[group(i, r)].append(c)
  return {name: dict(error_rates.rates_of(groups[name]), num_utterances=len(groups[name]))
          for name in sorted(groups, key=order)}


def greedy_transcripts(logits_BxUxV: np.ndarray, output_lengths_B: np.ndarray) -> list[str]:
  """Greedy CTC transcript of every row, reading only its first `output_lengths_B` positions."""
  return [vocab.greedy_decode(logits, int(n)) for logits, n in zip(logits_BxUxV, output_lengths_B)]


def references(labels_BxL: np.ndarray, label_paddings_BxL: np.ndarray) -> list[str]:
  """The transcripts that the label rows spell (what training learns to write)."""
  return [vocab.decode(labels[paddings == 0])
          for labels, paddings in zip(labels_BxL, label_paddings_BxL)]


# Beam search with a language model (`lm_decoder`): chosen on the main job's dev split (LER),
# over alpha 0-1, beta 0-2, orders 5-7 and beams 16-48.
LM_SETTINGS = {'order': 6, 'alpha': 0.7, 'beta': 1.5, 'beam': 16}
Decoder = Callable[[np.ndarray], str]  # one utterance's logits_UxV (no padding) -> transcript


def lm_decoder(config: ml_collections.ConfigDict, settings: Mapping[str, Any] = LM_SETTINGS
               ) -> Decoder:
  """Beam search with a token language model (`lm.fit`) of the transcripts of the training
  split of `config`'s data source (all of its utterances, whichever engines trained)."""
  try:
    train = data.load_split(config, config.data.train_split)
  except (data.DataError, FileNotFoundError) as e:
    raise data.DataError(f"The language model is made of the run's training transcripts "
                         f"({config.data.source}, split {config.data.train_split}): {e}") from e
  token_lm = lm.fit(np.split(train.labels, train.label_offsets[1:-1]), order=settings['order'])

  def decode(logits_UxV: np.ndarray) -> str:
    logprobs_UxV = scipy.special.log_softmax(np.asarray(logits_UxV, np.float64), axis=-1)
    return vocab.transcript(lm.beam_search(logprobs_UxV, token_lm,
                                           alpha=settings['alpha'], beta=settings['beta'],
                                           beam=settings['beam']))
  return decode


def transcribe(config: ml_collections.ConfigDict, variables: PyTree,
               batches: Iterable[Mapping[str, np.ndarray]], *, mesh: Optional[Mesh] = None,
               decode: Optional[Decoder] = None) -> Iterator[tuple[str, str, str]]:
  """Yields `(id, reference, hypothesis)` for every real row (weight > 0) of `batches`, decoded
  greedily or by `decode`."""
  mesh = parallel.make_mesh() if mesh is None else mesh
  forward = jit_forward(ml_collections.FrozenConfigDict(config), mesh)
  variables = parallel.replicate(
      {'params': variables['params'], 'batch_stats': variables['batch_stats']}, mesh)
  for batch in batches:
    device_batch = parallel.shard_batch(batch, mesh)
    logits, lengths = forward(variables, device_batch['audio'], device_batch['audio_lengths'])
    logits, lengths = parallel.to_host(logits), parallel.to_host(lengths)
    refs = references(batch['labels'], batch['label_paddings'])
    rows = np.flatnonzero(np.asarray(batch['weights']) > 0)
    hyps = (greedy_transcripts(logits, lengths) if decode is None else
            {row: decode(logits[row, :int(lengths[row])]) for row in rows})
    for row in rows:
      yield str(batch['id'][row]), refs[row], hyps[row]


def evaluate(config: ml_collections.ConfigDict, variables: PyTree,
             batches: Iterable[Mapping[str, np.ndarray]], *, mesh: Optional[Mesh] = None,
             num_examples: Optional[int] = None,
             engines: Optional[Mapping[str, str]] = None,
             decode: Optional[Decoder] = None) -> dict[str, Any]:
  """Letter and word error rates of greedy decoding (or `decode`) over `batches`.

  Args:
    config: the experiment config.
    variables: `{'params', 'batch_stats'}` of the model.
    batches: batches as `data.batches(..., train=False)` yields them.
    mesh: devices to split batches over; default all devices.
    num_examples: reference/hypothesis pairs to keep (default `config.eval.num_examples`).
    engines: {speaker id: speech engine} of a synthesized corpus (`voices.engines_of_speakers`).
    decode: a `Decoder` instead of greedy decoding (e.g. `lm_decoder`).
  Returns:
    `{'ler', 'wer', 'num_utterances', 'letter_edits', 'per_speaker', 'examples': [{'id',
    'reference', 'hypothesis'}, ...]}`; 'examples' are the first `num_examples` utterances by
    id; 'letter_edits' splits the LER into substitutions, deletions and insertions (each per
    letter of the references); 'per_speaker' maps each
    speaker (the id's part before the first '-', as in LibriSpeech) to its own
    `{'ler', 'wer', 'num_utterances'}`, 'per_length' each
    `length_group` (words in the reference: '1', '2-3', '4+') to its own,
    'per_speaker_length' each speaker to its own 'per_length', and with `engines`
    ({speaker: engine}) 'per_engine' each engine to its own.
  """
  num_examples = config.eval.num_examples if num_examples is None else num_examples
  rows = list(transcribe(config, variables, batches, mesh=mesh, decode=decode))
  if not rows:
    raise ValueError('Nothing to evaluate: the batches hold no utterance with weight > 0.')
  ids = [i for i, _, _ in rows]
  counts = [error_rates.pair_counts(r, h) for _, r, h in rows]  # one alignment per pair
  rates = error_rates.rates_of(counts)
  examples = [{'id': i, 'reference': r, 'hypothesis': h}  # by id: not the batches' order
              for i, r, h in sorted(rows)[:max(num_examples, 0)]]
  speaker = lambda i: i.split('-')[0]
  order = [name for name, _ in LENGTH_GROUPS]
  letters = max(sum(c['letters'] for c in counts), 1)
  result = {'ler': rates['ler'], 'wer': rates['wer'], 'num_utterances': len(ids),
            'letter_edits': {kind: sum(c[kind] for c in counts) / letters
                             for kind in ('substitutions', 'deletions', 'insertions')},
            'per_speaker': _rates_by(rows, counts, lambda i, r: speaker(i)),
            'per_length': _rates_by(rows, counts, lambda i, r: length_group(r), order.index),
            'per_speaker_length': {
                name: _rates_by(*zip(*[(row, c) for row, c in zip(rows, counts)
                                       if speaker(row[0]) == name]),
                                lambda i, r: length_group(r), order.index)
                for name in sorted({speaker(i) for i in ids})},
            'examples': examples}
  if engines:
    result['per_engine'] = _rates_by(rows, counts,
                                     lambda i, r: engines.get(speaker(i), 'unknown'))
  return result


def _file_safe(name: str) -> str:
  return re.sub(r'[^\w+-]', '_', name)


def evaluate_workdir(workdir: str | Path, split: str = 'test', *, step: Optional[int] = None,
                     max_utterances: Optional[int] = None,
                     data_source: Optional[str] = None,
                     lm_settings: Optional[Mapping[str, Any]] = None,
                     bn_pool: Optional[Mapping[str, Any]] = None,
                     num_examples: Optional[int] = None) -> dict[str, Any]:
  """Evaluates a trained run on `split`; writes `eval_SPLIT.json` and `eval.json` in `workdir`
  (on another corpus than the run's own, `eval_SOURCE_SPLIT.json` only; decoded with a
  language model, `eval_SPLIT_lm.json` or `eval_SOURCE_SPLIT_lm.json` only; with batch-norm
  statistics of a pool, `_bn-SPLIT` (`_bn-SOURCE_SPLIT` where the pool names its source) before
  `.json`, only).

  Characters of `split` (and `data_source`) other than letters, digits, '_', '+' and '-'
  become '_' in the file name.

  Args:
    workdir: the run's workdir.
    split: data split (see `data.batches`).
    step: checkpoint to evaluate; None for the latest.
    max_utterances: > 0 evaluates that many utterances spread over the split; None takes
      `config.eval.max_utterances` of the run (0 = all).
    data_source: another corpus ('folder:PATH' or 'tfds:NAME'); None: the run's own.
    lm_settings: beam search with a language model of the run's own training transcripts
      (`lm_decoder`; keys as LM_SETTINGS), instead of greedy decoding.
    bn_pool: `{'split', 'source', 'utterances'}`: evaluate with every batch-norm layer's
      statistics measured on that many utterances (0 = all) spread over that split of that
      corpus (None: the run's own corpus) instead of the run's (`bn_statistics.precise`).
    num_examples: reference/hypothesis pairs to keep (the first by id); None takes
      `config.eval.num_examples` of the run.
  Returns:
    The result dict of `evaluate` plus 'step', 'split', 'workdir', 'source' and 'decoder'
    ('greedy', or the language model's settings), and with `bn_pool` 'batch_stats' (the pool:
    its split, source and the utterances measured).
  """
  overrides = {} if data_source is None else {'data.source': data_source}
  config, variables, step = checkpoints.load_for_inference(workdir, step, overrides)
  files.check_writable(workdir)
  decode = None if lm_settings is None else lm_decoder(checkpoints.read_config(workdir),
                                                       lm_settings)
  if max_utterances is None:
    max_utterances = config.eval.max_utterances
  if max_utterances < 0:
    raise ValueError(f'max_utterances must be >= 0 (0 = all), got {max_utterances}.')
  if num_examples is not None and num_examples < 0:
    raise ValueError(f'num_examples must be >= 0, got {num_examples}.')
  mesh = parallel.make_mesh()
  pool = None
  if bn_pool is not None:
    variables, pool = pool_statistics(workdir, variables, bn_pool, mesh)
  batches = data.batches(config, split, train=False, batch_multiple=mesh.size,
                         max_utterances=max_utterances)
  kind, _, root = config.data.source.partition(':')
  engines = voices.engines_of_speakers(root) if kind == 'folder' else {}
  result = evaluate(config, variables, batches, mesh=mesh, num_examples=num_examples,
                    engines=engines, decode=decode)
  result = {'step': step, 'split': split, 'workdir': str(workdir),
            'source': config.data.source,
            'decoder': 'greedy' if lm_settings is None else dict(lm_settings), **result}
  if pool is not None:
    result['batch_stats'] = pool
  if jax.process_index() == 0:
    text = json.dumps(result, indent=2) + '\n'
    names = ((f'eval_{_file_safe(split)}.json', 'eval.json') if data_source is None else
             (f'eval_{_file_safe(data_source)}_{_file_safe(split)}.json',))
    if lm_settings is not None:
      names = (names[0].replace('.json', '_lm.json'),)
    if pool is not None:  # the pool's source in the name where one was asked for
      named = f'{_file_safe(bn_pool["source"])}_' if bn_pool.get('source') else ''
      names = (names[0].replace('.json', f'_bn-{named}{_file_safe(pool["split"])}.json'),)
    for name in names:
      files.write_text(Path(workdir) / name, text)
  return result


def pool_statistics(workdir: str | Path, variables: PyTree, bn_pool: Mapping[str, Any],
                    mesh: Mesh) -> tuple[PyTree, dict[str, Any]]:
  """`variables` with the batch-norm statistics of `bn_pool` (`evaluate_workdir`), and the pool
  as the result records it: `{'split', 'source', 'utterances'}`."""
  run_config = checkpoints.read_config(workdir)
  source = bn_pool.get('source') or run_config.data.source
  config = checkpoints.apply_overrides(run_config, {'data.source': source})
  utterances = bn_pool.get('utterances', 0)
  if utterances < 0:
    raise ValueError(f'The batch-norm pool\'s utterances must be >= 0 (0 = all), got {utterances}.')
  make = lambda: data.batches(config, bn_pool['split'], train=False, batch_multiple=mesh.size,
                              max_utterances=utterances)
  size = len(data.load_split(config, bn_pool['split']))
  count = min(utterances, size) if utterances else size  # as `data.batches` spreads them
  variables = bn_statistics.precise(config, variables, make, mesh=mesh)
  return variables, {'split': bn_pool['split'], 'source': source, 'utterances': count}


def summary(result: dict[str, Any]) -> str:
  """A few printable lines: error rates, and each example's reference and hypothesis."""
  head = (f'{result.get("split", "")} step {result.get("step", "?")}: '
          f'LER {result["ler"]:.4f}  WER {result["wer"]:.4f}  '
          f'({result["num_utterances"]} utterances)')
  lines = [head.strip()]
  if 'batch_stats' in result:
    pool = result['batch_stats']
    lines.append(f'  batch-norm statistics of {pool["utterances"]} utterances of '
                 f'{pool["source"]}, split {pool["split"]}')
  if 'letter_edits' in result:
    lines.append('  letters substituted, deleted, inserted: ' + ', '.join(
        f'{rate:.4f}' for rate in result['letter_edits'].values()))
  if len(result.get('per_engine', {})) > 1:
    lines.append('  LER per engine: ' + ', '.join(
        f'{engine} {r["ler"]:.4f}' for engine, r in result['per_engine'].items()))
  if len(result.get('per_length', {})) > 1:
    lines.append('  LER by words per utterance: ' + ', '.join(
        f'{name} {r["ler"]:.4f} ({r["num_utterances"]})'
        for name, r in result['per_length'].items()))
  if len(result.get('per_speaker', {})) > 1:
    lines.append('  LER per speaker: ' + ', '.join(
        f'{speaker} {r["ler"]:.4f}' for speaker, r in result['per_speaker'].items()))
    if len(result.get('per_length', {})) > 1:
      lines += [f'    {speaker} by words: ' + ', '.join(
          f'{name} {r["ler"]:.4f} ({r["num_utterances"]})' for name, r in groups.items())
                for speaker, groups in result.get('per_speaker_length', {}).items()]
  for ex in result.get('examples', []):
    lines += [f'  {ex["id"]}', f'    REF: {ex["reference"]}', f'    HYP: {ex["hypothesis"]}']
  return '\n'.join(lines)
