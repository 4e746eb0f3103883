"""Configs for training and introspecting Wav2Letter.

Presets, chosen after a colon:

  python experiments/train.py --config=navai_jax/configs/default.py:small --workdir=runs/small

* ``paper``: the paper's model (256/2048 channels, SPEC §2). For GPU runs and benchmarks;
  about 20 audio-seconds per second on a 2-core CPU, about 6,900 in the training loop on one
  NVIDIA H200 (with `data.batch_seconds=320` and `optax.ctc_loss`; the bare step is 1.6x
  faster with the default CTC now), where 3,000 steps (3.2 minutes) reach 6.3% test LER on
  held-out voices (`benchmarks/paper_training_curve.sh`).
* ``small``: same layer structure with 64/256 channels; the CPU demo. 150-300 audio-seconds
  per second on 2 CPU cores; on the main job's 6-hour corpus its 8000 steps (18-19 minutes
  of training) end at letter error rate 6.4% (dev) and 10.8% (test) on synthetic voices held
  out from training.
* ``tiny``: 8/16 channels, for tests; seconds per step.

Every preset keeps the receptive field of 206 input frames, so the introspection code runs
unchanged on all of them.
"""

import ml_collections

PRESETS = ('paper', 'small', 'tiny')


def get_config(preset: str = 'small') -> ml_collections.ConfigDict:
  """Returns the config for `preset` (one of PRESETS)."""
  if preset not in PRESETS:
    raise ValueError(f'Unknown config preset {preset!r}; choose one of {", ".join(PRESETS)}.')
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0

  # Model (SPEC §2). Channel widths of the 256-channel layers and the 2048-channel layers.
  c.model = ml_collections.ConfigDict()
  c.model.channels = {'paper': 256, 'small': 64, 'tiny': 8}[preset]
  c.model.wide_channels = {'paper': 2048, 'small': 256, 'tiny': 16}[preset]
  c.model.num_middle_layers = 8
  c.model.bn_momentum = 0.99
  c.model.bn_epsilon = 1e-5
  c.model.dropout = 0.1 if preset == 'tiny' else 0.0

  # Features (SPEC §1).
  c.features = ml_collections.ConfigDict()
  c.features.sample_rate = 16000
  c.features.window = 512
  c.features.hop = 128
  c.features.num_mels = 128
  c.features.top_db = 80.0

  # Data.
  c.data = ml_collections.ConfigDict()
  # 'folder:PATH' for any folder in LibriSpeech layout (our synthesized corpus or a local
  # LibriSpeech copy), or 'tfds:librispeech' for the standard TFDS dataset.
  c.data.source = 'folder:data/espeak_corpus'
  c.data.train_split = 'train'
  c.data.eval_split = 'dev'
  # '' = PATH/_tfds for 'folder:' sources, the TFDS default (~/tensorflow_datasets) for 'tfds:'.
  c.data.tfds_data_dir = ''
  # 'tfds' (every source through tensorflow-datasets) or 'direct' ('folder:' sources read
  # without TFDS or TensorFlow; the same utterances, for machines that lack TensorFlow).
  c.data.reader = 'tfds'
  c.data.batch_seconds = {'paper': 160.0, 'small': 40.0, 'tiny': 8.0}[preset]
  c.data.max_seconds = 16.0
  c.data.num_buckets = 8

  # Augmentation applied to features during training (frequency warp, SpecAugment-style masks,
  # noise).
  c.augment = ml_collections.ConfigDict()
  c.augment.enabled = preset != 'paper'
  # Vocal tract length perturbation: warp factors uniform in [1 - warp, 1 + warp]; 0 = off.
  # Off because it did not help on the synthesized voices: `small`, 6 hours, 8000 steps ended
  # at test LER 14.1% (warp 0.1) and 13.6% (0.2) against 12.3% without it.
  c.augment.warp = 0.0
  c.augment.noise_std = 0.1
  c.augment.freq_masks = 2
  c.augment.freq_mask_width = 12
  c.augment.time_masks = 1
  c.augment.time_mask_width = 20

  # Optimization.
  c.train = ml_collections.ConfigDict()
  c.train.learning_rate = {'paper': 5e-4, 'small': 5e-3, 'tiny': 3e-3}[preset]
  c.train.warmup_steps = {'paper': 500, 'small': 100, 'tiny': 5}[preset]
  # AdamW's decoupled decay, scaled by the learning rate, on convolution kernels only. For
  # `small` on the 6-hour corpus, 8000 steps end at test LER 12.3% with 1e-4, 12.0% with 0.05
  # and 11.0% with 0.1.
  c.train.weight_decay = {'paper': 1e-4, 'small': 0.1, 'tiny': 1e-4}[preset]
  c.train.grad_clip = 5.0
  c.train.num_steps = {'paper': 100_000, 'small': 8_000, 'tiny': 20}[preset]
  c.train.max_minutes = 0.0  # > 0: stop (and checkpoint) after this much training time.
  c.train.log_every = {'paper': 50, 'small': 50, 'tiny': 2}[preset]
  c.train.checkpoint_every = {'paper': 1000, 'small': 500, 'tiny': 5}[preset]
  c.train.eval_every = {'paper': 5000, 'small': 500, 'tiny': 0}[preset]
  c.train.loss = 'ctc'
  # The CTC implementation: 'forward_backward' (`navai_jax.ctc`: one scan for both recursions
  # and the gradient in closed form) or 'optax' (`optax.ctc_loss`, differentiated through its
  # scan). Both give the same loss and gradient; on one H200 the `paper` step takes 11.2 ms with
  # the first and 17.5 ms with the second.
  c.train.ctc = 'forward_backward'
  # Output positions per loop iteration of 'forward_backward' (speed only); 0 = 1 on a CPU and
  # 16 on an accelerator (`navai_jax.ctc.default_unroll`).
  c.train.ctc_unroll = 0

  c.eval = ml_collections.ConfigDict()
  c.eval.max_utterances = 0  # 0 = all.
  c.eval.num_examples = 5
  return c
