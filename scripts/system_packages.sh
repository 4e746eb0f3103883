# Sourced by run.sh and test.sh: `install_once NAME CHECK PACKAGE...` installs Debian packages
# with apt-get, once, where this runs as root and CHECK (a command) fails; elsewhere, or when
# the install fails, one line says what is missing and the caller goes on without it.
install_once() {
  local name=$1 check=$2
  shift 2
  if eval "$check" >/dev/null 2>&1 || [ -e ".venv/.$name-tried" ]; then
    return 0
  fi
  touch ".venv/.$name-tried"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's $* ($name)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") \
      >/dev/null 2>&1 || echo "Could not install $*; going on without $name." >&2
  else
    echo "Debian's $* (for $name) cannot be installed here (needs root and apt-get)." >&2
  fi
}
