#!/usr/bin/env bash
# Set up (first time) and start CLIP Explorer. Extra arguments go to app.py, e.g. --model local-dir:/path
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
