#!/usr/bin/env bash
# One command: set up (Python deps, the widgets' JS, Debian's Chromium for browser tests) and run every test.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh test
if [ ! -x /usr/bin/chromium ] && [ -z "${LLMROOF_SKIP_BROWSER:-}" ]; then
  echo "installing Debian's chromium for the browser tests" >&2
  SUDO=""; if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# lint, format and the engine's type check first (config in pyproject.toml); any error fails the run
echo "ruff check, ruff format --check, mypy" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
