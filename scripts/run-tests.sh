#!/usr/bin/env bash
# Set up (first time), lint, and run the whole test suite, browser tests included. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
.venv/bin/ruff check .   # the linter first (rules in pyproject.toml): a lint error fails the run
exec .venv/bin/python -m pytest "$@"
