#!/usr/bin/env bash
# One command: set everything up and open the main job (JupyterLab on the quickstart notebook).
#
# The notebooks open from working copies under notebooks/ (gitignored; copied from examples/ on the
# first run, kept afterwards), so running them never rewrites the tracked examples. Delete a copy
# to get the original back. LLMROOF_NOTEBOOKS=<dir> chooses another folder.
set -euo pipefail
cd "$(dirname "$0")"
say() { echo "run.sh: $*" >&2; }
bash scripts/bootstrap.sh lab
WORK="${LLMROOF_NOTEBOOKS:-notebooks}"
mkdir -p "$WORK"
for nb in examples/*.ipynb; do
  if [ ! -e "$WORK/$(basename "$nb")" ]; then
    cp "$nb" "$WORK/"
    say "copied $nb to $WORK/ (your working copy)"
  fi
done
ARGS=()
if [ "$(id -u)" = "0" ]; then ARGS+=(--allow-root); fi
say "starting JupyterLab on $WORK/quickstart.ipynb (examples/ stays untouched; Ctrl+C stops it)"
exec .venv/bin/python -m jupyter lab "$WORK/quickstart.ipynb" "${ARGS[@]}" "$@"
