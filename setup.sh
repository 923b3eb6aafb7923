#!/usr/bin/env bash
# One command sets everything up: the CPU build of torch first (so nothing pulls a multi-GB CUDA
# build), then circuit-bench itself with its test dependencies, into the current Python.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install --find-links /opt/wheels "torch==2.13.0"
else
  "$PY" -m pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install -e ".[dev]" "torch==2.13.0"
"$PY" -c "import core, cases, methods, evaluations, benchmark; print('circuit-bench is installed')"
