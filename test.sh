#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment in .venv, then runs the test suite.
# Extra arguments go to pytest (e.g. -k lrp).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
# The report's browser test renders it in headless Chromium: Debian's package, installed once
# where this runs as root with apt-get; elsewhere that test is skipped and says why.
if ! command -v chromium >/dev/null && [ ! -e .venv/.chromium-tried ]; then
  touch .venv/.chromium-tried
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the report's browser test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null 2>&1 || echo "Could not install chromium; the browser test will be skipped." >&2
  fi
fi
exec python -m pytest -q -n 2 tests "$@"
