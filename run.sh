#!/usr/bin/env bash
# One command: set everything up and open the main job (JupyterLab on the quickstart notebook).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh lab
ARGS=()
if [ "$(id -u)" = "0" ]; then ARGS+=(--allow-root); fi
exec .venv/bin/python -m jupyter lab examples/quickstart.ipynb "${ARGS[@]}" "$@"
