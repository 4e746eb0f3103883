"""Configs for training and introspecting Wav2Letter.

Presets, chosen after a colon:

  python experiments/train.py --config=navai_jax/configs/default.py:small --workdir=runs/small

* ``small``: 64/256 channels with the paper's layer structure; the CPU demo. The main job
  trains it 4,500 steps on its 4-hour corpus (~11 minutes on 2 CPU cores; its letter error
  rates in docs/results.md).
* ``paper``: the paper's model (256/2048 channels, SPEC §2), for GPUs and benchmarks
  (`benchmarks/paper_training_curve.sh`).
* ``tiny``: 8/16 channels, for tests; seconds per step.

Each preset is the `small` config with the fields of `PRESET_OVERRIDES` changed. Every preset
keeps the receptive field of 206 input frames, so the introspection code runs unchanged on all
of them.

Sections: `model`, `features`, `data`, `augment`, `train`, `eval` (training and evaluation);
`am` (activation maximization, experiments/activation_max.py), `navai` (the dataset pass,
experiments/navai.py), `layers` (the clustering of its layer profiles, experiments/layer_clusters.py)
and `attributions` (the attribution-evaluation suite,
experiments/evaluate_attributions.py), which the introspection scripts take as
`--config.SECTION.FIELD=VALUE` on top of the trained run's own config.
"""

import ml_collections

# Each preset is the `small` config below with these fields changed.
PRESET_OVERRIDES = {
    'small': {},
    'paper': {
        'model.channels': 256, 'model.wide_channels': 2048,
        'data.batch_seconds': 160.0,
        'augment.enabled': False,
        'train.learning_rate': 5e-4, 'train.warmup_steps': 500, 'train.weight_decay': 1e-4,
        'train.num_steps': 100_000, 'train.checkpoint_every': 1000, 'train.eval_every': 5000,
        'navai.frame_batch': 32,
    },
    'tiny': {
        'model.channels': 8, 'model.wide_channels': 16, 'model.dropout': 0.1,
        'data.batch_seconds': 8.0,
        'train.learning_rate': 3e-3, 'train.warmup_steps': 5, 'train.weight_decay': 1e-4,
        'train.num_steps': 20, 'train.log_every': 2, 'train.checkpoint_every': 5,
        'train.eval_every': 0, 'train.tensorboard': False,
        'am.steps': 20,
        'navai.frame_batch': 16, 'navai.sonify_iterations': 20, 'navai.figure_workers': 1,
        'attributions.max_utterances': 4, 'attributions.max_frames': 8,
        'attributions.max_sensitivity_samples': 4, 'attributions.frame_batch': 4,
    },
}
PRESETS = tuple(sorted(PRESET_OVERRIDES))


def get_config(preset: str = 'small') -> ml_collections.ConfigDict:
  """Returns the config for `preset` (one of PRESETS)."""
  if preset not in PRESETS:
    raise ValueError(f'Unknown config preset {preset!r}; choose one of {", ".join(PRESETS)}.')
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0

  # Model (SPEC §2). Channel widths of the 256-channel layers and the 2048-channel layers.
  c.model = ml_collections.ConfigDict()
  c.model.channels = 64
  c.model.wide_channels = 256
  c.model.num_middle_layers = 8
  c.model.bn_momentum = 0.99
  c.model.bn_epsilon = 1e-5
  c.model.dropout = 0.0

  # Features (SPEC §1): 16 kHz audio, 512-sample windows every 128 samples, 128 mel bins,
  # decibels floored 80 dB below the utterance's maximum, one mean and std per utterance
  # ('per_bin': one per mel bin), over every frame (speech_gate_db > 0: over the frames whose
  # loudest bin is within that many dB of the utterance's loudest).
  c.features = ml_collections.ConfigDict(
      {'sample_rate': 16000, 'window': 512, 'hop': 128, 'num_mels': 128, 'top_db': 80.0,
       'normalize': 'utterance', 'speech_gate_db': 0.0})

  # Data.
  c.data = ml_collections.ConfigDict()
  # 'folder:PATH' for any folder in LibriSpeech layout (our synthesized corpus or a local
  # LibriSpeech copy), or 'tfds:librispeech' for the standard TFDS dataset.
  c.data.source = 'folder:data/corpus'
  c.data.train_split = 'train'
  c.data.eval_split = 'dev'
  # '' = PATH/_tfds for 'folder:' sources, the TFDS default (~/tensorflow_datasets) for 'tfds:'.
  c.data.tfds_data_dir = ''
  # 'tfds' (every source through tensorflow-datasets) or 'direct' ('folder:' sources read
  # without TFDS or TensorFlow; the same utterances, for machines that lack TensorFlow).
  c.data.reader = 'tfds'
  # Speaker folders per shard when a 'folder:' split is prepared for the 'tfds' reader; each
  # shard is prepared on its own, so an interrupted preparation keeps the finished shards
  # (LibriSpeech's train-clean-100, 251 speakers: 6 shards; train-other-500: 24 of ~20 h).
  c.data.shard_speakers = 50
  c.data.batch_seconds = 40.0
  c.data.max_seconds = 16.0
  c.data.num_buckets = 8
  # Batches grain reads at once, ahead of the step that needs them (0 = read in the caller).
  c.data.read_threads = 4
  # The engines whose speakers training hears (() = every speaker of the training split; a
  # corpus folder's SPEAKERS.txt names each speaker's engine): ablations on one corpus.
  c.data.train_engines = ()
  # The first this many epochs of training go from the shortest bucket to the longest (each
  # bucket's batches shuffled), the later ones in a shuffled order: SortaGrad (Amodei et al.
  # 2016, Deep Speech 2), a curriculum for CTC's first stage.
  c.data.sorted_epochs = 0

  # Augmentation during training: of the sound (speed, rooms, noise; measured in
  # docs/results.md) and of the features (frequency warp, SpecAugment-style masks, noise).
  c.augment = ml_collections.ConfigDict()
  c.augment.enabled = True
  c.augment.speeds = ()  # Speed perturbation: factors drawn per utterance, e.g. (0.9, 1.0, 1.1).
  c.augment.reverb = 0.0  # Share of utterances played in a simulated room (pyroomacoustics).
  c.augment.rooms = 16  # Rooms (impulse responses) drawn from the run's seed.
  c.augment.noise_snr_db = ()  # White noise at an SNR drawn from (lowest, highest) dB.
  # Vocal tract length perturbation: warp factors uniform in [1 - warp, 1 + warp]; 0 = off
  # (off: warps of 0.1 and 0.2 raised the held-out voices' LER on the synthetic corpus).
  c.augment.warp = 0.0
  c.augment.noise_std = 0.1
  c.augment.freq_masks = 2
  c.augment.freq_mask_width = 12
  c.augment.time_masks = 1
  c.augment.time_mask_width = 20

  # Optimization.
  c.train = ml_collections.ConfigDict()
  # Peak rate: 2.5e-3 against 5e-3 read the human voice at LER 0.612 against 0.627 over three
  # seeds, spread a quarter as far (docs/results.md, "The learning rate").
  c.train.learning_rate = 2.5e-3
  c.train.warmup_steps = 100
  # AdamW's decoupled decay, scaled by the learning rate, on convolution kernels only.
  c.train.weight_decay = 0.1
  c.train.grad_clip = 5.0
  c.train.num_steps = 8_000
  c.train.max_minutes = 0.0  # > 0: stop (and checkpoint) after this much training time.
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.eval_every = 500
  # Also write the logged scalars as TensorBoard event files into WORKDIR/tensorboard.
  c.train.tensorboard = True
  c.train.loss = 'ctc'
  # The CTC implementation: 'forward_backward' (`navai_jax.recognizer.ctc`: one scan for both recursions
  # and the gradient in closed form) or 'optax' (`optax.ctc_loss`, differentiated through its
  # scan). Both give the same loss and gradient.
  c.train.ctc = 'forward_backward'
  # Output positions per loop iteration of 'forward_backward' (speed only); 0 = 1 on a CPU and
  # 16 on an accelerator (`navai_jax.recognizer.ctc.default_unroll`).
  c.train.ctc_unroll = 0
  # A finished run's folder to start from: its latest weights and batch-norm statistics (a model
  # of the same shapes), a fresh optimizer and schedule from step 0; '' for fresh weights from
  # `seed`. Read only at step 0: a resumed run goes on from its own checkpoint.
  c.train.init_from = ''
  # True: every language of the `other_languages` split (in `data.train_split`) is read through
  # an output layer of its own over the shared layers below, so its letters do not train the
  # English one's; inference and every figure use the English layer only.
  c.train.language_heads = False
  # The loss weight of an utterance of the `other_languages` split against 1 for the corpus's
  # own: 0 keeps them in the batches (and batch norm's statistics) without a loss of their own.
  c.train.other_languages_weight = 1.0
  # > 0: an adversary learns to tell from each frame of the last hidden layer which engine
  # voiced it, and the layers below get its gradient reversed and scaled by this weight (ramped
  # up over training: `adversary_weight` of training/train.py), so they learn what is the same
  # in every engine's voices. Needs a corpus whose SPEAKERS.txt names the engines; inference
  # and every figure read the model alone.
  c.train.engine_adversary = 0.0
  # > 0: a linear layer over `phoneme_layer`'s output (0: the last hidden layer) learns which
  # phoneme sounds at each frame, from the corpus's true times (`.timing.json`; 0 for silence,
  # 1..39 ARPAbet), and its cross-entropy, times this weight, is added to the CTC loss.
  # Utterances without times add nothing. Needs a corpus with true times; inference and every
  # figure read the model alone. `phoneme_steps` > 0: the head's loss counts for the first that
  # many steps only (0: for all of them).
  c.train.phoneme_head = 0.0
  c.train.phoneme_layer = 0
  c.train.phoneme_steps = 0

  c.eval = ml_collections.ConfigDict()
  c.eval.max_utterances = 0  # 0 = all.
  c.eval.num_examples = 5

  # Activation maximization (SPEC §7); the defaults are the paper's (§3.2).
  c.am = ml_collections.ConfigDict()
  c.am.steps = 250
  c.am.learning_rate = 0.05
  c.am.l1 = 0.001  # Weight of sum |x|.
  c.am.l2 = 0.001  # Weight of sum x**2 (the squared L2 norm, not the norm).
  c.am.tv_time = 0.0  # Weight of sum |x[t + 1, f] - x[t, f]|.
  c.am.tv_freq = 0.0  # Weight of sum |x[t, f + 1] - x[t, f]|.
  c.am.jitter = 0  # Each step rolls the input by a random shift in [-jitter, jitter] frames.
  # 'bn' (before the ReLU) or 'act' (after it); see `navai_jax.introspection.activation_max`.
  c.am.objective_point = 'bn'
  c.am.seed = 0

  # NAvAI over a split (SPEC §8, §10).
  c.navai = ml_collections.ConfigDict()
  c.navai.split = 'dev'
  c.navai.max_utterances = 0  # > 0: this many evenly spaced utterances of the split.
  c.navai.methods = ('none', 'sensitivity_min', 'sensitivity_max', 'lrp_max')
  c.navai.fill = 'zeros'  # 'zeros' (the paper's crop) or 'recut' from the utterance.
  # Normalized pattern = letter mean - the mean of all frames ('frames', the paper's) or of the
  # letter means ('classes', every letter once); moments.normalized_patterns.
  c.navai.baseline = 'frames'
  c.navai.frame_batch = 64  # Frames per attribution chunk (memory against speed).
  c.navai.save_every = 20  # Batches between saves of the pass state.
  c.navai.figure_letters = ('a', 't')  # The letters of Figure 3.
  # ARPAbet phonemes (navai_jax/speech/phonemes.py) of phonemes.png and the sounds.
  c.navai.phonemes = ('ae', 'ay', 'iy', 'ah', 'eh', 'p', 't', 'k', 'b', 'd', 'g')
  # Folder with the corpus .timing.json files; '' = the data source's folder.
  c.navai.timing_dir = ''
  c.navai.sonify_method = 'sensitivity_min'  # The alignment whose mean frames are sonified.
  c.navai.sonify_iterations = 200  # Griffin-Lim iterations.
  # Processes drawing the figures while the sounds are made (1 = in the pass's own process).
  c.navai.figure_workers = 2
  # Layers (1-12) whose outputs the same pass profiles per letter and phoneme
  # (navai_jax/introspection/layer_profiles.py); () for none.
  c.navai.layers = tuple(range(1, 13))
  # How the layer outputs are aligned: 'none', 'gradient_max' (the layer's own gradient), or
  # one of navai.methods carried to the layer's time axis.
  c.navai.layer_alignments = ('none', 'gradient_max', 'sensitivity_min', 'sensitivity_max',
                              'lrp_max')
  # Layers (1..11) whose channels' share of each letter's LRP relevance the same pass averages
  # (concept importance, `introspection/concepts.py`): concepts_SPLIT.npz and concepts.md;
  # () for none. About free: the shares come from the relevance LRP computes anyway.
  c.navai.concept_layers = (4, 8, 11)
  # Reference frames per channel of those layers: the k frames where the channel carries the
  # most relevance and the k where it is most active (references_SPLIT.npz, the atlas).
  c.navai.references = 16

  # The channel atlas (experiments/atlas.py): per layer of `layers` (among
  # navai.concept_layers) each letter's `channels_per_letter` channels of the largest mean
  # share of its relevance, the NAvAI (`method`) over the frames each of them carries most
  # (over `max_utterances` of the NAvAI split, 0 = all), and per channel its label, its best
  # `crops` reference frames of each kind with their conditional maps, its AM input and the
  # sound of its best `sounds` references.
  c.atlas = ml_collections.ConfigDict()
  c.atlas.layers = (8,)
  c.atlas.channels_per_letter = 3
  c.atlas.crops = 4
  c.atlas.sounds = 1
  c.atlas.method = 'lrp_max'
  c.atlas.max_utterances = 300

  # Where phonemes form: clustering of the layer profiles (experiments/layer_clusters.py).
  c.layer_clusters = ml_collections.ConfigDict()
  c.layer_clusters.alignment = 'none'  # The layer alignment of the dendrograms and profile figures.
  # Contrastive profiles = class mean - the mean of the class means ('classes') or of all
  # frames ('frames', as navai.baseline).
  c.layer_clusters.baseline = 'classes'
  # JSON phoneme -> category file; '' = ARPAbet's (and eSpeak English's, for older corpora).
  c.layer_clusters.categories = ''
  c.layer_clusters.min_frames = 20  # Phoneme classes with fewer frames are not clustered.
  c.layer_clusters.permutations = 1000  # Shuffles of the categories for the chance baseline.
  c.layer_clusters.dendrogram_layers = (1, 5, 9, 11)
  c.layer_clusters.figure_layer = 5  # The layer of the profile and channel figures.
  c.layer_clusters.figure_phonemes = ('ae', 'iy', 'eh', 's', 'z', 't', 'k', 'm', 'n', 'l')
  c.layer_clusters.letters = ('a', 't')  # "Which channels carry letter X".
  c.layer_clusters.top_channels = 4
  c.layer_clusters.seed = 0

  # The attribution-evaluation suite (SPEC §11; experiments/evaluate_attributions.py).
  c.attributions = ml_collections.ConfigDict()
  c.attributions.split = 'dev'
  c.attributions.max_utterances = 32  # Evenly spaced utterances whose frames are candidates.
  c.attributions.max_frames = 64  # Frames evaluated, evenly spaced over the candidates.
  c.attributions.methods = ('sensitivity', 'sensitivity_logit', 'gradient_x_input',
                            'integrated_gradients', 'smoothgrad', 'guided_backprop', 'grad_cam',
                            'lrp_paper', 'lrp_zero', 'lrp_epsilon', 'lrp_zplus',
                            'lrp_alphabeta', 'random')
  c.attributions.metrics = ('deletion', 'insertion', 'randomisation', 'random_logit',
                            'max_sensitivity', 'localisation', 'sparseness',
                            'utterance_deletion')
  c.attributions.granularities = ('bin', 'column', 'patch')
  c.attributions.step = 0.05  # Fraction of the units removed per step of a curve.
  c.attributions.patch = 8  # Patch side (frames and mel bins) of the 'patch' granularity.
  c.attributions.baseline = 'zero'  # 'zero' (the z-normalized mean) or 'bin_mean'.
  c.attributions.max_sensitivity_samples = 200  # Quantus's default.
  c.attributions.max_sensitivity_radius = 0.2  # Quantus's default.
  c.attributions.utterance_fractions = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
  c.attributions.utterance_count = 8  # Utterances of the utterance-level deletion.
  c.attributions.frame_batch = 16  # Frames per jitted call.
  c.attributions.timing_dir = ''  # As navai.timing_dir.
  c.attributions.seed = 0

  for path, value in PRESET_OVERRIDES[preset].items():
    section, field = path.split('.')
    c[section][field] = value
  return c
