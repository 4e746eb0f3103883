"""What every stage does first and the writers they share."""

from typing import Iterator

import jax
import ml_collections
import numpy as np

from navai_jax.core import files
from navai_jax.core import rules
from navai_jax.faithfulness import suite
from navai_jax.introspection import activation_max
from navai_jax.introspection import channel_labels
from navai_jax.introspection import navai
from navai_jax.introspection import phoneme_clusters
from navai_jax.recognizer import features
from navai_jax.speech import data
from navai_jax.training import train

# The rules of every config section (`rules`), each from the module that reads it.
RULE_TABLES = train.RULE_TABLES + (activation_max.RULES, navai.RULES, phoneme_clusters.RULES,
                                   suite.RULES, channel_labels.RULES)


def check_config(config: ml_collections.ConfigDict) -> None:
  """One ValueError listing every field of `config` out of range."""
  rules.raise_problems(rules.problems(config, *RULE_TABLES) + train.cross_section_problems(config))


def start(config: ml_collections.ConfigDict, out_dir: str) -> None:
  """Every stage's opening: one ValueError listing every config field out of range, and one
  naming an output folder that cannot be written, before any work."""
  check_config(config)
  files.check_writable(out_dir)


def savez(path: str, **arrays) -> None:
  """`np.savez`, written atomically."""
  with files.atomic(path) as tmp, open(tmp, 'wb') as f:
    np.savez(f, **arrays)


def feature_batches(config: ml_collections.ConfigDict, split: str,
                    max_utterances: int = 0) -> Iterator[tuple[jax.Array, jax.Array, list[str]]]:
  """`(x_BxTxF, frames_B, ids)` of the split's real utterances, batch by batch."""
  for batch in data.batches(config, split, train=False, max_utterances=max_utterances):
    yield features.of_batch(batch, config)
