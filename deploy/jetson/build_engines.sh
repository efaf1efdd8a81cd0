#!/usr/bin/env bash
# Build TensorRT engines for every shipped ONNX model and check them against the CPU.
# All options go to build_engines.py (--help); see deploy/jetson/README.md.
#   deploy/jetson/build_engines.sh                  # build into the runtime's engine cache
#   deploy/jetson/build_engines.sh --providers cpu  # dry run of the checks on the CPU
# The Python used: $PYTHON, else the repository's .venv, else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$here/build_engines.py" "$@"
