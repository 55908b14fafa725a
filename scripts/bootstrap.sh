#!/usr/bin/env bash
# Set up .venv with the project installed (editable, which builds the widgets' JS with npm).
# Usage: scripts/bootstrap.sh [extra]   (extra: lab | test)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA="${1:-lab}"
START=$SECONDS
say() { echo "bootstrap: $* ($((SECONDS - START)) s)" >&2; }
PY="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: $*"
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
  else
    echo "please install: $*" >&2
    return 1
  fi
}

command -v "$PY" >/dev/null || { echo "python3 (3.10+) is required" >&2; exit 1; }
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: installing Debian's nodejs and npm" >&2
  apt_install nodejs npm
fi
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv"
  "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$PY" -m venv .venv; }
fi
STAMP=".venv/.llmroof-installed-$EXTRA"
LABEXT_BUILT=llmroof_widgets/labextension/package.json
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ package.json -nt "$STAMP" ] || [ ! -f llmroof_widgets/static/layer_table.js ] \
   || [ ! -f "$LABEXT_BUILT" ] || [ labextension/package.json -nt "$STAMP" ]; then
  say "upgrading pip"
  .venv/bin/python -m pip install -q --upgrade pip
  # the JS bundles are rebuilt by the install's build hook (npm install + esbuild)
  rm -rf llmroof_widgets/static
  say "installing llmroof_widgets[$EXTRA] and its dependencies, building the widgets' JavaScript (a minute or two the first time)"
  # pip's own progress, one line per package (not the "already satisfied" noise)
  .venv/bin/python -m pip install --progress-bar off -e ".[$EXTRA]" \
    | { grep --line-buffered -E '^(Collecting|Building|Installing|Successfully)' || true; } | sed -u 's/^/  /' >&2
  touch "$STAMP"
  say "installed"
else
  say "up to date (.venv has llmroof_widgets[$EXTRA]; delete $STAMP to reinstall)"
fi
# The JupyterLab extension: the editable install copied llmroof_widgets/labextension (hatch shared-data)
# to .venv/share/jupyter/labextensions/llmroof-widgets. Link it instead (what `jupyter labextension
# develop` does), so a later `npm run build` updates what JupyterLab loads without a reinstall.
LABEXT_DIR=.venv/share/jupyter/labextensions/llmroof-widgets
if [ -f "$LABEXT_BUILT" ] && [ ! -L "$LABEXT_DIR" ]; then
  rm -rf "$LABEXT_DIR"
  mkdir -p "$(dirname "$LABEXT_DIR")"
  ln -s "$PWD/llmroof_widgets/labextension" "$LABEXT_DIR"
fi
