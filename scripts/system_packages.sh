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

# `with_contrib_non_free`: adds Debian's contrib and non-free components to apt's sources, once,
# where this runs as root on Debian: MBROLA (contrib) and its voices and RHVoice's (non-free,
# their licences restrict use) live there. Elsewhere the packages are named as missing as any.
with_contrib_non_free() {
  local list=/etc/apt/sources.list.d/navai-contrib-non-free.sources codename
  if [ "$(id -u)" != 0 ] || [ -e "$list" ] || ! grep -qs '^ID=debian' /etc/os-release; then
    return 0
  fi
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || return 0
  echo "Adding Debian's contrib and non-free components ($list)" >&2
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' "Suites: $codename" \
    'Components: contrib non-free' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$list"
}

# The MBROLA and RHVoice engines' programs and voices (`--engines=...,mbrola,rhvoice`).
install_mbrola() {
  local check='command -v mbrola && [ -f /usr/share/mbrola/en1/en1 ]'
  eval "$check" >/dev/null 2>&1 || with_contrib_non_free
  install_once mbrola "$check" mbrola mbrola-us1 mbrola-us2 mbrola-en1 libespeak-ng1 \
    espeak-ng-data
}
# Twelve more MBROLA speakers, speaking English with an accent (`--engines=...,mbrola_accented`).
install_mbrola_accented() {
  local check='command -v mbrola && [ -f /usr/share/mbrola/sw1/sw1 ]'
  eval "$check" >/dev/null 2>&1 || with_contrib_non_free
  install_once mbrola_accented "$check" mbrola libespeak-ng1 espeak-ng-data \
    mbrola-{af1,de4,de5,de6,fr1,fr4,gr2,hu1,nl2,pl1,ro1,sw1}
}
install_rhvoice() {
  local check='command -v RHVoice-test && [ -d /usr/share/RHVoice/voices/bdl ]'
  eval "$check" >/dev/null 2>&1 || with_contrib_non_free
  install_once rhvoice "$check" rhvoice rhvoice-english
}
