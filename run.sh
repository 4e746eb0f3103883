#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the main job:
# synthesize the offline corpus, train the `small` model, evaluate it, and introspect it.
# Extra arguments go to experiments/main.py (e.g. --train_minutes=5).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
exec python experiments/main.py "$@"
