"""`edgetune.json`: the manifest every stage writes into its output directory.

It records what the stage was given, its config, what it measured and the sha256 of every file,
so any later stage (or person) can tell exactly where an artifact came from.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from edgetune import __version__
from edgetune.errors import EdgetuneError
from edgetune_runtime.atomic_write import write_json_atomic
from edgetune_runtime.hashing import sha256_file

MANIFEST = "edgetune.json"


def read_stage_manifest(directory: Path) -> dict:
    """The manifest of a stage output, or {} for a directory no edgetune stage wrote."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise EdgetuneError(f"{path}: not valid JSON ({error}); the directory was edited or damaged") from None


def manifest_sha256(directory: Path) -> str | None:
    path = Path(directory) / MANIFEST
    return sha256_file(path) if path.is_file() else None


def write_stage_manifest(staging: Path, stage: str, task: str, body: dict) -> dict:
    """Write the manifest last, once every other file of the stage is in `staging`."""
    manifest = {
        "stage": stage,
        "edgetune_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "task": task,
        **body,
        "files": {path.name: sha256_file(path) for path in sorted(staging.iterdir())
                  if path.is_file() and path.name != MANIFEST},
    }
    write_json_atomic(staging / MANIFEST, json.loads(json.dumps(manifest, default=str)))
    return manifest
