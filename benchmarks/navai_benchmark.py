"""NAvAI throughput against what the hardware allows, where its time goes, and its memory.

  python benchmarks/navai_benchmark.py --presets=small,paper --utterances=8 \
      --memory_preset=small --memory_utterances=8

Per preset, in a fresh subprocess each:

* throughput: `dataset_pass.run_pass` (features, the shared utterance pass, frames, sensitivity, LRP,
  the four alignments, accumulation of letter moments) over `--utterances` utterances after
  one compiling batch; frames per second = letter frames folded / seconds;
* work per frame, counted from the layer shapes as the original pass did it: one forward and
  two backward passes (sensitivity, LRP) over the 206-frame window, each backward costing what
  its forward costs. Layer l of the window's VALID pass has `L_l = (L_{l-1} - K_l) / S_l + 1`
  outputs (206 inputs; 80, 74, ..., 32, 1, 1, 1 outputs) and costs `2 L_l K_l C_l D_l` FLOPs;
  the sum is the forward (88 MFLOP for `small`, 683 for `paper`), three times it the frame's
  work (0.27 and 2.05 GFLOP). The pass now reuses the utterance's forward and does two passes,
  so it is credited with the work it no longer does;
* peak: the fastest dense convolution measured in the same process: every layer of the
  preset's window pass over a chunk of `--frame_batch` frames, plus the `paper` model's
  layers 1 and 2 (the largest convolutions of the network), best of three. A shared machine
  moves it by 2x between runs (174 and 334 GFLOP/s seen on the same 2-core machine), so it is
  measured `--rounds` times, each round just before a timed pass, and its spread printed;
* efficiency = the best round's frames/s x FLOPs per frame / the best round's peak (best
  against best: both are what the machine allows when nothing else runs);
* breakdown: each stage jitted alone on the same chunk (features, shared forward, window
  slicing, sensitivity, LRP, alignment, moment updates) and the host side (making batches,
  copying them to the devices), in ms per frame; the rest of the pass is the `while_loop`
  and the chunk padding.

Layer profiles: the same throughput with every layer profiled in the pass (`navai.layers`, all
twelve, the five layer alignments; what the main job runs), and its ratio to the plain pass
(`--profile_layers=false` skips it). Concept importance: the same with every channel's LRP
share folded at `--concept_layers` (default 4, 8, 11; empty skips it) and its 16 reference
frames by relevance and by activation kept (streaming top-k), and its ratio.


Memory: passes over N = `--memory_utterances` and 4N utterances of `--memory_preset`; the
accumulator's size does not depend on the number of frames, so the two peaks should differ
by well under 10% (`benchmarks/memory_benchmark.py` measures it on real corpora).

Audio is synthetic (harmonic tones gliding under noise, `--seconds` long), the weights random
with the output bias set against non-letters, so almost every output position whose window
lies inside the utterance is a letter frame; the cost per frame does not depend on the
weights' values. Batches are generated on the fly, so they add nothing to memory either.
"""

import functools
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import common
from navai_jax.introspection import alignment
from navai_jax.introspection import attribution
from navai_jax.introspection import dataset_pass
from navai_jax.recognizer import features
from navai_jax.introspection import frames
from navai_jax.introspection import lrp
from navai_jax.recognizer import model
from navai_jax.introspection import moments
from navai_jax.introspection import navai
from navai_jax.recognizer import network
from navai_jax.recognizer import vocab
from navai_jax.configs import default

_PRESETS = flags.DEFINE_list('presets', ['small', 'paper'], 'Presets whose throughput to time.')
_UTTERANCES = flags.DEFINE_integer('utterances', 8, 'Timed utterances per preset.')
_SECONDS = flags.DEFINE_float('seconds', 3.0, 'Seconds per synthetic utterance.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 4, 'Utterances per batch.')
_FRAME_BATCH = flags.DEFINE_integer('frame_batch', 64, 'Frames per attribution chunk.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed passes, each after a measurement of the '
                               'peak; the best of each is reported, with their spread.')
_MEMORY_PRESET = flags.DEFINE_string('memory_preset', 'small',
                                     "Preset of the N-versus-4N memory runs ('' = none).")
_MEMORY_UTTERANCES = flags.DEFINE_integer('memory_utterances', 8, 'N of the memory runs.')
_CONCEPT_LAYERS = flags.DEFINE_list('concept_layers', ['4', '8', '11'], 'Also time the pass '
                                    'with the channel shares of these layers (concepts).')
_PROFILE_LAYERS = flags.DEFINE_bool('profile_layers', True, 'Also time the pass that profiles '
                                     'all twelve layers.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: run one measurement, '
                             '"PRESET:UTTERANCES:BREAKDOWN:LAYERS".')


def window_layer_flops(config) -> list[dict]:
  """Shapes and FLOPs of every layer of one 206-frame window's VALID forward pass."""
  out, length, channels = [], model.RECEPTIVE_FIELD, config.features.num_mels
  for spec in model.layer_specs(config.model):
    outputs = (length - spec.kernel) // spec.stride + 1
    out.append({'layer': spec.number, 'inputs': length, 'outputs': outputs,
                'kernel': spec.kernel, 'stride': spec.stride, 'in_channels': channels,
                'out_channels': spec.features,
                'flops': 2 * outputs * spec.kernel * channels * spec.features})
    length, channels = outputs, spec.features
  return out


def frame_flops(config) -> float:
  """FLOPs of one frame as the pass was first written: one forward, two backward passes."""
  return 3.0 * sum(layer['flops'] for layer in window_layer_flops(config))


def _best_seconds(fn, *args, repeats: int = 3) -> float:
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


@functools.lru_cache(maxsize=None)
def _jit_conv(stride: int):
  return jax.jit(functools.partial(model.conv1d, stride=stride, padding='VALID'))


def dense_conv_peak(config, frame_batch: int) -> dict:
  """GFLOP/s of the fastest dense convolution among the preset's window layers and the
  `paper` model's layers 1 and 2, each over `frame_batch` sequences."""
  paper = window_layer_flops(default.get_config('paper'))[:2]
  rng = np.random.default_rng(0)
  best = {'gflops': 0.0}
  for layer in window_layer_flops(config) + paper:
    if layer['outputs'] * layer['stride'] < 8:  # a matrix-vector product, not a convolution
      continue
    a = jnp.asarray(rng.normal(size=(frame_batch, layer['inputs'], layer['in_channels'])),
                    jnp.float32)
    w = jnp.asarray(rng.normal(size=(layer['kernel'], layer['in_channels'],
                                     layer['out_channels'])), jnp.float32)
    gflops = frame_batch * layer['flops'] / _best_seconds(_jit_conv(layer['stride']), a, w) / 1e9
    if gflops > best['gflops']:
      best = dict(layer, gflops=gflops, of='paper' if layer in paper else 'preset')
  return best


def synthetic_batches(num_utterances: int, batch_size: int, seconds: float, seed: int = 0):
  """Batches of tone-and-noise utterances, generated one at a time."""
  rng = np.random.default_rng(seed)
  n = int(seconds * 16000)
  t = np.arange(n) / 16000
  for first in range(0, num_utterances, batch_size):
    rows = min(batch_size, num_utterances - first)
    audio = np.zeros((batch_size, n), np.float32)
    for r in range(rows):
      f0 = 100 + 100 * rng.random() + 50 * np.sin(2 * np.pi * rng.random() * t)
      phase = 2 * np.pi * np.cumsum(f0) / 16000
      audio[r] = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1
      audio[r] += 0.02 * rng.normal(size=n)
    weights = (np.arange(batch_size) < rows).astype(np.float32)
    yield {'audio': audio, 'audio_lengths': np.full(batch_size, n, np.int32),
           'weights': weights, 'id': np.array([''] * batch_size),
           'text': np.array([''] * batch_size)}


def breakdown(config, variables, frame_batch: int) -> dict[str, float]:
  """Milliseconds per frame of each stage, jitted alone on one chunk of `frame_batch` frames."""
  out = {}
  start = time.perf_counter()
  for _ in range(3):
    batch = next(synthetic_batches(_BATCH_SIZE.value, _BATCH_SIZE.value, _SECONDS.value, 2))
    arrays = [jax.device_put(np.asarray(batch[k])) for k in ('audio', 'audio_lengths',
                                                             'weights')]
  host = (time.perf_counter() - start) / 3
  audio, lengths, weights = arrays
  log_mel = jax.jit(lambda a, l: features.log_mel(a, l, config))
  x, frames_B = log_mel(audio, lengths)
  forward = jax.jit(lambda x: model.apply_inference(config, variables, x))
  logits, intermediates = forward(x)
  valid, tokens = jax.jit(lambda l, f: frames.frame_mask(config, l, f))(logits, frames_B)
  found = int(valid.sum())
  sel = frames.select(valid, tokens, frame_batch)
  layers = network.layers_from_variables(config, variables)
  slice_ = jax.jit(lambda x, i, u, p: frames.window_activations(config, x, i, u, p))
  inputs, pre = slice_(x, intermediates, sel.utterance_N, sel.position_N)
  sens = jax.jit(jax.vmap(functools.partial(attribution.sensitivity_of_pass, layers)))
  relev = jax.jit(jax.vmap(functools.partial(lrp.relevance_paper, layers)))
  s_map, r_map = sens(inputs, pre, sel.token_N), relev(inputs, pre, sel.token_N)
  methods = alignment.ALIGNMENTS
  specs = model.layer_specs(config.model)

  def align(s_map, r_map, x, frames_B, sel):
    maps = {'sensitivity': s_map, 'lrp': r_map}
    p = jnp.stack([alignment.alignment_positions(m, maps, frame_batch) for m in methods])
    start = model.window_start(specs, sel.position_N)
    return jax.vmap(lambda q: alignment.cut_aligned(x, frames_B, sel.utterance_N, start, q))(p)

  align = jax.jit(align)
  aligned = align(s_map, r_map, x, frames_B, sel)
  state = navai.empty_pass_state(len(methods), 0, config.features.num_mels).letters
  fold = jax.jit(lambda st, a, c, v: jax.vmap(moments.fold, in_axes=(0, 0, None, None))(
      st, a, c, v))
  letter = sel.token_N - vocab.LETTER_IDS[0]
  per_chunk = {
      'features (per utterance batch)': _best_seconds(log_mel, audio, lengths),
      'shared forward (per utterance batch)': _best_seconds(forward, x),
      'window slicing': _best_seconds(slice_, x, intermediates, sel.utterance_N,
                                      sel.position_N),
      'sensitivity backward': _best_seconds(sens, inputs, pre, sel.token_N),
      'LRP backward': _best_seconds(relev, inputs, pre, sel.token_N),
      'alignment (4 methods)': _best_seconds(align, s_map, r_map, x, frames_B, sel),
      'moment updates (4 methods)': _best_seconds(fold, state, aligned, letter, sel.valid_N),
  }
  for name, seconds in per_chunk.items():
    frames_of = found if 'per utterance batch' in name else frame_batch
    out[name] = 1e3 * seconds / frames_of
  out['host: batches and copies (per utterance batch)'] = 1e3 * host / found
  return out


def measure(preset: str, num_utterances: int, with_breakdown: bool,
            profile_layers: bool = False, concept_layers: tuple[int, ...] = ()) -> dict:
  """One pass after a compiling warm-up batch; frames, seconds, peak memory, the peak conv."""
  config = default.get_config(preset)
  variables = common.letter_variables(config)
  settings = navai.Settings(frame_batch=_FRAME_BATCH.value,
                            layers=tuple(config.navai.layers) if profile_layers else (),
                            concept_layers=concept_layers)
  kw = dict(settings=settings, save_every=10**9)
  start = time.perf_counter()
  dataset_pass.run_pass(config, variables, synthetic_batches(_BATCH_SIZE.value, _BATCH_SIZE.value,
                                                      _SECONDS.value, seed=1), **kw)
  warmup = time.perf_counter() - start
  seconds, peaks = [], []
  # With the breakdown, the peak is measured before each timed pass (rounds), so both see the
  # same machine; without it one pass is timed.
  for _ in range(_ROUNDS.value if with_breakdown else 1):
    if with_breakdown:
      peaks.append(dense_conv_peak(config, _FRAME_BATCH.value))
    start = time.perf_counter()
    result = dataset_pass.run_pass(config, variables, synthetic_batches(
        num_utterances, _BATCH_SIZE.value, _SECONDS.value), **kw)
    seconds.append(time.perf_counter() - start)
  out = {'preset': preset, 'utterances': num_utterances, 'frames': result.frames,
         'seconds': min(seconds), 'frames_per_second': result.frames / min(seconds),
         'frames_per_second_rounds': [result.frames / s for s in seconds],
         'warmup_seconds': warmup, 'devices': jax.local_device_count(),
         'device': jax.devices()[0].device_kind,
         'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  if with_breakdown:
    out['flops_per_frame'] = frame_flops(config)
    out['layers'] = window_layer_flops(config)
    out['peak'] = max(peaks, key=lambda p: p['gflops'])
    out['peak_rounds'] = [p['gflops'] for p in peaks]
    out['breakdown_ms_per_frame'] = breakdown(config, variables, _FRAME_BATCH.value)
  return out


def in_subprocess(preset: str, num_utterances: int, with_breakdown: bool = False,
                  profile_layers: bool = False, concept_layers: tuple[int, ...] = ()) -> dict:
  flags_ = [f'--{name}={flags.FLAGS[name].serialize().split("=", 1)[1]}'
            for name in ('seconds', 'batch_size', 'frame_batch', 'rounds')]
  child = (f'--child={preset}:{num_utterances}:{int(with_breakdown)}:{int(profile_layers)}:'
           + '/'.join(map(str, concept_layers)))
  out = subprocess.run([sys.executable, __file__, child] + flags_, check=True,
                       capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(argv):
  del argv
  if _CHILD.value:
    preset, num, with_breakdown, profile_layers, concept_layers = _CHILD.value.split(':')
    print(json.dumps(measure(preset, int(num), bool(int(with_breakdown)),
                             bool(int(profile_layers)),
                             tuple(int(l) for l in concept_layers.split('/') if l))))
    return
  print('command:', ' '.join(sys.argv))
  print(f'machine: {os.cpu_count()} CPU cores, load average before the run '
        f'{os.getloadavg()[0]:.2f}')
  for preset in _PRESETS.value:
    r = in_subprocess(preset, _UTTERANCES.value, with_breakdown=True)
    peak, flops = r['peak'], r['flops_per_frame']
    achieved = r['frames_per_second'] * flops / 1e9
    rounds = r['frames_per_second_rounds']
    print(f'\n{preset}: {r["frames"]} frames of {r["utterances"]} x {_SECONDS.value:g} s in '
          f'{r["seconds"]:.1f} s = {r["frames_per_second"]:.1f} frames/s on {r["devices"]} '
          f'{r["device"]} device(s), best of {len(rounds)} rounds ({min(rounds):.1f}-'
          f'{max(rounds):.1f}; warm-up batch incl. compile {r["warmup_seconds"]:.1f} s, '
          f'peak RSS {r["peak_rss_mb"]:.0f} MB)')
    print('  window forward, per layer: ' + ', '.join(
        f'{l["layer"]}: {l["outputs"]}x{l["kernel"]}x{l["in_channels"]}x{l["out_channels"]}'
        f' = {l["flops"] / 1e6:.1f} MFLOP' for l in r['layers']))
    print(f'  work per frame (1 forward + 2 backward over the window): {flops / 1e9:.3f} GFLOP')
    print(f'  peak dense conv: {peak["gflops"]:.0f} GFLOP/s, best of {len(r["peak_rounds"])} '
          f'rounds ({min(r["peak_rounds"]):.0f}-{max(r["peak_rounds"]):.0f}; {peak["of"]} layer '
          f'{peak["layer"]}, {_FRAME_BATCH.value}x{peak["inputs"]}x{peak["in_channels"]} -> '
          f'{peak["out_channels"]}, kernel {peak["kernel"]}, stride {peak["stride"]})')
    print(f'  NAvAI: {achieved:.0f} GFLOP/s = {achieved / peak["gflops"]:.0%} of the best peak')
    total = 1e3 / r['frames_per_second']
    print(f'  where a frame\'s {total:.2f} ms go (each stage jitted alone):')
    for name, ms in r['breakdown_ms_per_frame'].items():
      print(f'    {name:48s} {ms:7.3f} ms')
    rest = total - sum(r['breakdown_ms_per_frame'].values())
    print(f'    {"rest (while_loop, chunk padding, dispatch)":48s} {rest:7.3f} ms')
    if _PROFILE_LAYERS.value:
      p = in_subprocess(preset, _UTTERANCES.value, profile_layers=True)
      print(f'  with every layer profiled (12 layers, 5 layer alignments): '
            f'{p["frames_per_second"]:.1f} frames/s = '
            f'{p["frames_per_second"] / r["frames_per_second"]:.2f} x the plain pass '
            f'(warm-up batch incl. compile {p["warmup_seconds"]:.1f} s, peak RSS '
            f'{p["peak_rss_mb"]:.0f} MB)')
    if _CONCEPT_LAYERS.value:
      layers = tuple(int(l) for l in _CONCEPT_LAYERS.value)
      c = in_subprocess(preset, _UTTERANCES.value, concept_layers=layers)
      print(f'  with concept importance and reference frames at layers '
            f'{", ".join(map(str, layers))} (every channel): '
            f'{c["frames_per_second"]:.1f} frames/s = '
            f'{c["frames_per_second"] / r["frames_per_second"]:.2f} x the plain pass '
            f'(warm-up batch incl. compile {c["warmup_seconds"]:.1f} s)')
  if _MEMORY_PRESET.value:
    n = _MEMORY_UTTERANCES.value
    small, large = (in_subprocess(_MEMORY_PRESET.value, k) for k in (n, 4 * n))
    change = large['peak_rss_mb'] / small['peak_rss_mb'] - 1
    print(f'\n{_MEMORY_PRESET.value} peak RSS: {small["peak_rss_mb"]:.0f} MB for {n} utterances '
          f'({small["frames"]} frames), {large["peak_rss_mb"]:.0f} MB for {4 * n} '
          f'({large["frames"]} frames): {change:+.1%}')
  print(f'\nload average after the run {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  app.run(main)
