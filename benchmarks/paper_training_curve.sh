#!/usr/bin/env bash
# Trains the `paper` model for a fixed wall-clock budget and prints its LER against training time.
#
#   benchmarks/paper_training_curve.sh            # defaults below; every one can be overridden:
#   HOURS=20 MINUTES=4.5 BATCH_SECONDS=320 LEARNING_RATE=1e-3 benchmarks/paper_training_curve.sh
#
# Made for a machine with an accelerator (on a 2-core CPU `paper` trains at ~20 audio-s/s).
# Steps:
#   1. synthesize a corpus of HOURS training hours, 136 training speakers (every eSpeak variant
#      that dev and test do not use, twice) and the standard dev/test speakers; or, with
#      CORPUS=PATH, train on that corpus as it is (LibriSpeech layout, e.g. the main job's);
#   2. time the jitted train step on a made-up batch (`train_benchmark.py`) and size the cosine
#      schedule so that it ends after about MINUTES of training (or take NUM_STEPS as given);
#      training stops at MAX_MINUTES (default 1.5 x MINUTES) in any case;
#   3. train with dev evaluations at eight points, then evaluate on the test voices and, with
#      HUMAN=PATH (experiments/make_human_set.py's folder), on the human voice;
#   4. print step, training minutes, loss and dev LER, and the test (and human) result.
# Data go through `--config.data.reader=$READER` ('direct' by default: it needs no TensorFlow,
# so the script also runs on a JAX-only GPU image; 'tfds' gives the same utterances).
# Everything lands in $OUT_DIR (default runs/paper_curve): corpus/, train/, curve.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
OUT_DIR=${OUT_DIR:-runs/paper_curve}
HOURS=${HOURS:-20}
MINUTES=${MINUTES:-4.5}
BATCH_SECONDS=${BATCH_SECONDS:-320}
LEARNING_RATE=${LEARNING_RATE:-1e-3}
WARMUP_STEPS=${WARMUP_STEPS:-300}
WORKERS=${WORKERS:-$(nproc)}
READER=${READER:-direct}
AUGMENT=${AUGMENT:-True}
PRESET=${PRESET:-paper}

mkdir -p "$OUT_DIR"
corpus=${CORPUS:-$OUT_DIR/corpus}
workdir="$OUT_DIR/train"
# Progress bars go to the logs; what is printed is their lines without the bars.
quiet() {  # quiet LOG COMMAND...: runs COMMAND into LOG, prints it without progress bars.
  local log=$1 status=0
  shift
  "$@" > "$log" 2>&1 || status=$?
  tr '\r' '\n' < "$log" | grep -v 's/s\]\|step/s\|s/step\|it/s\]\|^\s*$' || true
  return "$status"
}
for given in CORPUS HUMAN; do  # named before training, not after it
  if [[ -n "${!given:-}" && ! -d "${!given}" ]]; then
    echo "$given=${!given} is not a folder." >&2
    exit 1
  fi
done
if [[ -n "${CORPUS:-}" ]]; then
  HOURS=$("$PYTHON" -c "import json, sys
try:
  print(json.load(open(sys.argv[1]))['splits']['train']['hours'])
except OSError:
  print('?')  # a corpus not made by make_corpus.py (LibriSpeech itself) has no corpus.json" \
      "$corpus/corpus.json")
  echo "== corpus: $corpus, $HOURS h of training audio"
else
  echo "== corpus: $HOURS h of training audio, $WORKERS synthesis processes"
  quiet "$OUT_DIR/corpus.log" "$PYTHON" experiments/make_corpus.py --out_dir="$corpus" \
      --hours="$HOURS" --train_speakers=136 --workers="$WORKERS"
fi

if [[ -n "${NUM_STEPS:-}" ]]; then
  num_steps=$NUM_STEPS
else
  echo "== step time of $PRESET at $BATCH_SECONDS s of audio per batch"
  probe=$("$PYTHON" benchmarks/train_benchmark.py --preset="$PRESET" \
      --batch_seconds="$BATCH_SECONDS" --steps=10 --repeats=2 2>&1 | tee /dev/stderr |
      grep -o '[0-9.]* s per step' | head -1)
  seconds_per_step=${probe%% s per step}
  # 85% of the budget for steps; the rest goes to compiling each bucket's shape and the host.
  num_steps=$("$PYTHON" -c "print(max(100, int(0.85 * $MINUTES * 60 / $seconds_per_step)))")
  echo "   $seconds_per_step s per step"
fi
eval_every=$(( ((num_steps + 7) / 8 + 49) / 50 * 50 ))  # a multiple of the logging interval
max_minutes=${MAX_MINUTES:-$("$PYTHON" -c "print(1.5 * $MINUTES)")}
echo "   $num_steps steps, at most $max_minutes min, dev evaluation every $eval_every steps"

echo "== training"
quiet "$OUT_DIR/train.log" "$PYTHON" experiments/train.py --config=navai_jax/configs/default.py:"$PRESET" --workdir="$workdir" \
    --config.data.source=folder:"$corpus" --config.data.reader="$READER" \
    --config.data.batch_seconds="$BATCH_SECONDS" --config.data.num_buckets=4 \
    --config.augment.enabled="$AUGMENT" --config.train.learning_rate="$LEARNING_RATE" \
    --config.train.warmup_steps="$WARMUP_STEPS" --config.train.num_steps="$num_steps" \
    --config.train.max_minutes="$max_minutes" \
    --config.train.eval_every="$eval_every" --config.train.checkpoint_every="$eval_every" \
    --config.train.log_every=50

echo "== test voices"
"$PYTHON" experiments/evaluate.py --workdir="$workdir" --split=test 2>&1 | tail -n 12
if [[ -n "${HUMAN:-}" ]]; then
  echo "== the human voice"
  "$PYTHON" experiments/evaluate.py --workdir="$workdir" --split=human \
      --data_source=folder:"$HUMAN" 2>&1 | tail -n 12
fi

"$PYTHON" - "$workdir" "$HOURS" <<'EOF' | tee "$OUT_DIR/curve.txt"
import json, pathlib, sys
workdir, hours = pathlib.Path(sys.argv[1]), sys.argv[2]
records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
config = json.loads((workdir / 'config.json').read_text())
losses = {r['step']: r for r in records if 'loss' in r}
rate = [r['audio_seconds_per_second'] for r in losses.values()]
print(f"{config['preset']} on {hours} h, batch {config['data']['batch_seconds']} s, "
      f"lr {config['train']['learning_rate']}, augmentation {config['augment']['enabled']}; "
      f"median {sorted(rate)[len(rate) // 2]:.0f} audio-s/s over the logged windows")
print('| step | training minutes | train loss | dev LER | dev WER |')
print('|---|---|---|---|---|')
for r in records:
  if r.get('split'):
    loss = losses.get(r['step'], {}).get('loss', float('nan'))
    print(f"| {r['step']} | {r['elapsed_seconds'] / 60:.2f} | {loss:.3f} | {r['ler']:.4f} | "
          f"{r['wer']:.4f} |")
test = json.loads((workdir / 'eval_test.json').read_text())
print(f"test: LER {test['ler']:.4f}, WER {test['wer']:.4f} on {test['num_utterances']} utterances")
for path in sorted(workdir.glob('eval_folder_*_human.json')):
  human = json.loads(path.read_text())
  print(f"human voice: LER {human['ler']:.4f}, WER {human['wer']:.4f} on "
        f"{human['num_utterances']} utterances")
EOF
