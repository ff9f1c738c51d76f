#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the app's (and, with --dev, the tests')
# dependencies, and this project installed into it in editable mode (the `clip-explorer` command).
# A second run with unchanged requirements does nothing but check a stamp file.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
python=${PYTHON:-python3}
venv=.venv
requirements=requirements.txt
[ $dev = 1 ] && requirements=requirements-dev.txt

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.installed-$(basename "$requirements" .txt)"
dev_stamp="$venv/.installed-requirements-dev"  # the dev set includes the app's, so it satisfies both
wanted=$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] && [ "$(cat "$dev_stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing $requirements (first run: torch and friends, a few minutes)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$requirements"
  # The dependencies are all in place: install the package itself without resolving them again.
  PYTHONWARNINGS=ignore "$venv/bin/python" -m pip install -q --no-deps -e .
  # The tests' reference reader of the map's Parquet file, without the extras it would pull (see the file).
  if [ $dev = 1 ]; then "$venv/bin/python" -m pip install -q --no-deps -r requirements-atlas.txt; fi
  echo "$wanted" > "$stamp"
fi

if [ $dev = 1 ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  # Browser tests drive Debian's chromium (Playwright's own browser download is not used).
  if command -v apt-get >/dev/null; then
    echo "setup: installing chromium for the browser tests"
    sudo_cmd=""
    [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium not found and apt-get unavailable: browser tests will be skipped" >&2
  fi
fi
