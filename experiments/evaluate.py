"""Greedy decoding of a split with a trained run; letter and word error rates.

  python experiments/evaluate.py --workdir=runs/small --split=test
  python experiments/evaluate.py --workdir=runs/small --split=test --decoder=lm

Writes WORKDIR/eval_SPLIT.json and WORKDIR/eval.json (ler, wer, num_utterances, step, split
and --num_examples reference/hypothesis pairs, the first by id) and prints them. With
--data_source=folder:PATH (or tfds:NAME) the run is evaluated on another corpus, written to
WORKDIR/eval_SOURCE_SPLIT.json.
With --decoder=lm it decodes by beam search with a token 6-gram language model of the run's
own training transcripts (`recognizer.lm`), written to WORKDIR/eval_SPLIT_lm.json (or
eval_SOURCE_SPLIT_lm.json); the defaults of its settings were chosen on the main job's dev split.
With --bn_split=SPLIT every batch-norm layer's statistics are measured again, clean and layer by
layer, on --bn_utterances of that split (of --bn_source, default the run's own corpus) before
decoding (`training.bn_statistics`); written to WORKDIR/eval_..._bn-SPLIT.json:

  python experiments/evaluate.py --workdir=runs/small --split=human \
      --data_source=folder:data/asterisk --bn_split=train
"""


from absl import app
from absl import flags

from navai_jax.stages import cli
from navai_jax.training import evaluate

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory of experiments/train.py.',
                               required=True)
_SPLIT = flags.DEFINE_string('split', 'test', 'Data split, e.g. test or dev.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
_MAX_UTTERANCES = flags.DEFINE_integer(
    'max_utterances', None, 'Evaluate this many utterances spread over the split (0 = all); '
    "default the run's config.eval.max_utterances.")

_NUM_EXAMPLES = flags.DEFINE_integer(
    'num_examples', None, 'Reference/hypothesis pairs to write and print, the first by id (at '
    "least the split's size: every utterance); default the run's config.eval.num_examples.",
    lower_bound=0)

_DECODER = flags.DEFINE_enum('decoder', 'greedy', ['greedy', 'lm'],
                             'greedy (SPEC §3), or beam search with a language model.')
_LM = evaluate.LM_SETTINGS
_LM_ORDER = flags.DEFINE_integer('lm_order', _LM['order'], 'With --decoder=lm: tokens per '
                                 'n-gram.', lower_bound=1)
_LM_ALPHA = flags.DEFINE_float('lm_alpha', _LM['alpha'], "With --decoder=lm: the model's weight.",
                               lower_bound=0)
_LM_BETA = flags.DEFINE_float('lm_beta', _LM['beta'], 'With --decoder=lm: added per token.')
_BEAM = flags.DEFINE_integer('beam', _LM['beam'], 'With --decoder=lm: prefixes kept.',
                             lower_bound=1)

_BN_SPLIT = flags.DEFINE_string('bn_split', None, "Measure the batch-norm statistics on this "
                                'split before decoding (default: keep the run\'s).')
_BN_SOURCE = flags.DEFINE_string('bn_source', None, "With --bn_split: the corpus it is a split "
                                 "of, 'folder:PATH' or 'tfds:NAME' (default: the run's own).")
_BN_UTTERANCES = flags.DEFINE_integer('bn_utterances', 1500, 'With --bn_split: utterances '
                                      'spread over the split to measure on (0 = all).',
                                      lower_bound=0)

_DATA_SOURCE = cli.define_data_source()

flags.register_validator('step', lambda s: s is None or s >= 0, '--step must be >= 0.')
flags.register_validator('max_utterances', lambda n: n is None or n >= 0,
                         '--max_utterances must be >= 0 (0 = all).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  result = evaluate.evaluate_workdir(_WORKDIR.value, _SPLIT.value, step=_STEP.value,
                                     max_utterances=_MAX_UTTERANCES.value,
                                     num_examples=_NUM_EXAMPLES.value,
                                     data_source=_DATA_SOURCE().get('data.source'),
                                     lm_settings=None if _DECODER.value == 'greedy' else {
                                         'order': _LM_ORDER.value, 'alpha': _LM_ALPHA.value,
                                         'beta': _LM_BETA.value, 'beam': _BEAM.value},
                                     bn_pool=None if _BN_SPLIT.value is None else {
                                         'split': _BN_SPLIT.value, 'source': _BN_SOURCE.value,
                                         'utterances': _BN_UTTERANCES.value})
  print(evaluate.summary(result))


if __name__ == '__main__':
  cli.run(main)
