#!/usr/bin/env bash
# Sets up (idempotent) and runs lint, format check, type check and the whole test suite (what CI runs).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the fast loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=8"
exec .venv/bin/python -m pytest -q "$@"
