"""navai_jax: Wav2Letter in JAX and the introspection of Krug & Stober (2018).

The functions a notebook needs most, re-exported under their own names
(`navai_jax.attribute(...)`); every module stays importable as
`from navai_jax.introspection import lrp`. The subpackages, lowest first; each may import only
those above it in this list (tests/imports_test.py keeps it true):

  configs        the presets (`get_config('tiny' | 'small' | 'paper')`)
  core           safe writes and folder locks; one format for config rules
  recognizer     the model: tokens, log-mel features, Wav2Letter, the same as explicit layers, CTC
  speech         speech data: LibriSpeech-layout folders, TFDS, batches, the synthesized corpus
                 and its true phoneme times
  training       augmentation, checkpoints, devices, the training loop, error rates, evaluation
  introspection  single frames (sensitivity, LRP, AM) and NAvAI over a split: alignment,
                 moments, the pass, layer profiles, phoneme clusters, alignment quality
  faithfulness   are the maps faithful? the metrics and the suite
  outputs        figures, sounds, recordings of one's own, the HTML report
  stages         each experiment from a trained run to the files it writes; the scripts' flags

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

from navai_jax.configs.default import get_config
from navai_jax.faithfulness.suite import evaluate_attributions
from navai_jax.introspection.activation_max import maximize_neuron
from navai_jax.introspection.activation_max import maximize_neurons
from navai_jax.introspection.activation_max import optimal_inputs_for_letter
from navai_jax.introspection.alignment import alignment_positions
from navai_jax.introspection.alignment import cut_aligned
from navai_jax.introspection.attribution import attribute
from navai_jax.introspection.attribution import sensitivity_of_pass
from navai_jax.introspection.dataset_pass import run_pass
from navai_jax.introspection.frames import collect
from navai_jax.introspection.frames import find_letter
from navai_jax.introspection.layer_profiles import contrastive_profiles
from navai_jax.introspection.lrp import lrp_batch
from navai_jax.introspection.lrp import lrp_frames
from navai_jax.introspection.lrp import paper_rule
from navai_jax.introspection.lrp import relevance
from navai_jax.introspection.lrp import relevance_paper
from navai_jax.introspection.moments import normalized_patterns
from navai_jax.introspection.moments import summarize
from navai_jax.introspection.moments import welch_t
from navai_jax.introspection.navai import fold_batch
from navai_jax.introspection.navai import result_arrays
from navai_jax.introspection.phoneme_clusters import score_clustering
from navai_jax.outputs.sonify import sonify
from navai_jax.recognizer.features import log_mel
from navai_jax.recognizer.network import layers_from_variables
from navai_jax.speech.data import batches
from navai_jax.training.checkpoints import load_for_inference
from navai_jax.training.evaluate import evaluate_workdir

__all__ = (
    'get_config',
    'evaluate_attributions',
    'maximize_neuron',
    'maximize_neurons',
    'optimal_inputs_for_letter',
    'alignment_positions',
    'cut_aligned',
    'attribute',
    'sensitivity_of_pass',
    'run_pass',
    'collect',
    'find_letter',
    'contrastive_profiles',
    'lrp_batch',
    'lrp_frames',
    'paper_rule',
    'relevance',
    'relevance_paper',
    'normalized_patterns',
    'summarize',
    'welch_t',
    'fold_batch',
    'result_arrays',
    'score_clustering',
    'sonify',
    'log_mel',
    'layers_from_variables',
    'batches',
    'load_for_inference',
    'evaluate_workdir',
)
