#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the test suite.
# Extra arguments go to pytest (e.g. -k lrp).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
exec python -m pytest -q -n 2 tests "$@"
