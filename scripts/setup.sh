#!/usr/bin/env bash
# Idempotent set-up: Debian packages (when we may install them), .venv, the package.
#   scripts/setup.sh              .venv: the project with its dev and train extras
#   scripts/setup.sh --python310  also .venv310 on Python 3.10 (JetPack 6's), for `make test310`
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing+=(mosquitto)
have mosquitto_sub || missing+=(mosquitto-clients)
have espeak-ng || missing+=(espeak-ng)
# The tests: ffmpeg serves streams, openssl makes TLS certificates, and the offline
# test runs the demo in a network namespace (ip) under strace.
have ffmpeg || missing+=(ffmpeg)
have openssl || missing+=(openssl)
have strace || missing+=(strace)
have ip || missing+=(iproute2)
ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || missing+=(libportaudio2)
# Debian and Ubuntu ship venv support separately from python3.
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
  else sudo="none"
  fi
  if [ "$sudo" = none ]; then
    echo "setup: missing Debian packages ${missing[*]}; install them with:" \
         "sudo apt-get install -y ${missing[*]}" >&2
  else
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# Reinstall only when the project's dependencies or package list changed.
stale() { [ ! -f "$1" ] || [ pyproject.toml -nt "$1" ] || { [ -f setup.py ] && [ setup.py -nt "$1" ]; }; }

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.edge-msa-installed
if stale "$stamp"; then
  # train: the fusion tests train and export a small model (torch CPU wheel).
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev,train]"
  touch "$stamp"
fi

[ "${1:-}" = --python310 ] || exit 0

# Python 3.10: $PYTHON310, else python3.10 on the PATH, else pyenv's newest 3.10.x
# (installed with `pyenv install 3.10` when pyenv has none).
pyenv_310() {
  local pyenv root
  pyenv=$(command -v pyenv || { [ -x "$HOME/.pyenv/bin/pyenv" ] && echo "$HOME/.pyenv/bin/pyenv"; }) \
    || return 1
  root=$("$pyenv" root)
  if ! compgen -G "$root/versions/3.10.*/bin/python" >/dev/null; then
    echo "setup: installing Python 3.10 with pyenv (a few minutes)" >&2
    "$pyenv" install -s 3.10 >&2
  fi
  compgen -G "$root/versions/3.10.*/bin/python" | sort -V | tail -1
}
is_310() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; }
py310=${PYTHON310:-}
# A pyenv shim named python3.10 exists for any installed 3.10 but runs only where
# that version is selected: each candidate must prove it is 3.10.
is_310 "$py310" || py310=$(command -v python3.10 || true)
is_310 "$py310" || py310=$(pyenv_310 || true)
if ! is_310 "$py310"; then
  echo "setup: Python 3.10 not found: install pyenv and run 'pyenv install 3.10'," \
       "or 'apt-get install python3.10 python3.10-venv', or set PYTHON310" >&2
  exit 1
fi
[ -x .venv310/bin/python ] || "$py310" -m venv .venv310
stamp=.venv310/.edge-msa-installed
if stale "$stamp"; then
  # No train extra: the PyTorch CPU wheel on hand is for Python 3.11, and a plain
  # `torch` on 3.10 would pull a multi-GB CUDA build. Tests that train skip here.
  .venv310/bin/pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
