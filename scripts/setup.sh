#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with nitrogen-jax (editable) and its test extras.
# torch comes from the pinned CPU wheel (==2.13.0) and is installed first, so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[test]"
echo "nitrogen-jax is set up in .venv ($(.venv/bin/python -c 'import jax; print("jax", jax.__version__)'))"
