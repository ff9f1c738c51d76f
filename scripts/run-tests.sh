#!/usr/bin/env bash
# Set up (first time), lint, and run the whole test suite, browser tests included. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
.venv/bin/ruff check .   # the linter first (rules in pyproject.toml): a lint error fails the run
if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest "$@"; fi
# The whole suite: two workers (one file to a worker at a time, one torch thread each, so the two do
# not fight over the cores), then the timing-sensitive files alone (the `serial` mark, tests/conftest.py).
status=0
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadfile -m "not serial" || status=$?
.venv/bin/python -m pytest -m serial || status=$?
exit $status
