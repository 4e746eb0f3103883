#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the main job:
# synthesize the offline corpus, train the `small` model, evaluate it, and introspect it.
# Extra arguments go to experiments/main.py (e.g. --train_minutes=5).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
# A human voice to evaluate on (never trained on): Debian's Asterisk prompts, installed once
# where this runs as root with apt-get; elsewhere the main job says it is missing and goes on.
if [ ! -d /usr/share/asterisk/sounds/en_US_f_Allison ] && [ ! -e .venv/.asterisk-tried ]; then
  touch .venv/.asterisk-tried
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's asterisk-core-sounds-en(-g722): a human voice for evaluation" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      asterisk-core-sounds-en-g722 asterisk-core-sounds-en) >/dev/null 2>&1 \
      || echo "Could not install them; the main job goes on without the human voice." >&2
  fi
fi
exec python experiments/main.py "$@"
