#!/usr/bin/env bash
# Idempotent set-up: Debian packages (when we may install them), .venv, the package.
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

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Reinstall only when the project's dependencies changed.
stamp=.venv/.edge-msa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # train: the fusion tests train and export a small model (torch CPU wheel).
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev,train]"
  touch "$stamp"
fi
