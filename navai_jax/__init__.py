"""navai_jax: Wav2Letter in JAX and the introspection of Krug & Stober (2018).

The user-facing functions, re-exported so that a notebook writes `navai_jax.attribute(...)`;
every module stays importable as `from navai_jax import lrp`. The modules, lowest first:

  configs, validation, files, cli             presets; allowed values; safe writes; scripts
  vocab, metrics, features, model, network   tokens; error rates; log-mel; Wav2Letter
  layout, data, tfds_folder                   LibriSpeech-layout folders; batches
  espeak, text, corpus, timing                the synthesized corpus and its true times
  ctc, augment, checkpoints, parallel, train, evaluate
  frames, lrp, attribution, activation_max    single frames: maps and optimal inputs
  alignment, moments, layer_profiles, navai, alignment_quality
                                              NAvAI: align, average, profile every layer,
                                              the dataset pass
  phoneme_clusters                            where phonemes form: clusters against categories
  attribution_metrics, faithfulness           are the maps faithful? metrics and the suite
  figures, sonify, workflows                  figures, sounds, the experiments end to end

Shape letters (a name's suffix after `_`, e.g. `x_BxTxF`; one meaning each, everywhere):

  A audio samples          B utterances of a batch    C input channels of a layer
  D output channels        E FFT bins                 F mel bins
  G runs of greedy CTC     H samples of an FFT window I AM optimization steps
  J integration points     K kernel width             L label tokens
  M alignment methods      N frames (examples)        P devices
  Q pixels of a window     R reference characters     S CTC states
  T feature frames         U output positions         V vocabulary tokens
  W frames of a receptive window (206)                Y classes (letters or phonemes)
  Z positions of a layer's output in a receptive window (80 in layer 1 ... 1 in layer 12)
"""

from navai_jax.introspection.activation_max import maximize_neuron
from navai_jax.introspection.activation_max import maximize_neurons
from navai_jax.introspection.activation_max import optimal_inputs_for_letter
from navai_jax.introspection.alignment import alignment_positions
from navai_jax.introspection.alignment import cut_aligned
from navai_jax.introspection.attribution import attribute
from navai_jax.training.checkpoints import load_for_inference
from navai_jax.configs.default import get_config
from navai_jax.speech.data import batches
from navai_jax.training.evaluate import evaluate_workdir
from navai_jax.faithfulness.suite import evaluate as evaluate_attributions
from navai_jax.recognizer.features import log_mel
from navai_jax.introspection.frames import collect
from navai_jax.introspection.frames import find_letter
from navai_jax.introspection.layer_profiles import contrastive as contrastive_profiles
from navai_jax.introspection.lrp import lrp_batch
from navai_jax.introspection.lrp import lrp_frames
from navai_jax.introspection.lrp import relevance
from navai_jax.introspection.moments import summarize
from navai_jax.introspection.moments import welch_t
from navai_jax.introspection.navai import results
from navai_jax.introspection.navai import run_pass
from navai_jax.introspection.phoneme_clusters import score as cluster_score
from navai_jax.recognizer.network import layers_from_variables
from navai_jax.outputs.sonify import sonify as sonify_frame

__all__ = (
    'maximize_neuron',
    'maximize_neurons',
    'optimal_inputs_for_letter',
    'alignment_positions',
    'cut_aligned',
    'attribute',
    'load_for_inference',
    'get_config',
    'batches',
    'evaluate_workdir',
    'evaluate_attributions',
    'log_mel',
    'collect',
    'find_letter',
    'contrastive_profiles',
    'lrp_batch',
    'lrp_frames',
    'relevance',
    'summarize',
    'welch_t',
    'results',
    'run_pass',
    'cluster_score',
    'layers_from_variables',
    'sonify_frame',
)
