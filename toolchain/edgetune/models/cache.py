"""Where resolved models live on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgetune.models.registry import PackagedModel

# Written last into a cached model directory: its presence means "complete and hash-checked".
VERIFIED_MARKER = "edgetune-verified.json"


def cache_root() -> Path:
    """`$EDGETUNE_CACHE`, else `$XDG_CACHE_HOME/edgetune`, else `~/.cache/edgetune`."""
    if os.environ.get("EDGETUNE_CACHE"):
        return Path(os.environ["EDGETUNE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "edgetune"


def model_cache_dir(model: PackagedModel) -> Path:
    return cache_root() / "models" / model.cache_name


def cached_model_dir(model: PackagedModel) -> Path | None:
    """The cached directory when a complete, verified copy exists, else None."""
    directory = model_cache_dir(model)
    marker = directory / VERIFIED_MARKER
    if not marker.is_file():
        return None
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("weights_sha256") != model.weights_sha256:
        return None
    return directory
