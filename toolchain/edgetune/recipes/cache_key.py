"""Content addresses of stage outputs: the same inputs, config and code always give the same key.

key = sha256 of (stage kind, stage config, upstream stage keys, data fingerprint for stages that
read the data, fingerprints of the pretrained models named, edgetune version + hash of the stage's
source files). A re-run finds the same directories and skips them; any change re-runs that stage
and everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import edgetune
from edgetune.configuration import config_to_dict
from edgetune.recipes.data_source import ResolvedData
from edgetune.recipes.schema import Recipe, RecipeStage
from edgetune.recipes.stages import STAGES, config_value


def stage_keys(recipe: Recipe, data: ResolvedData) -> dict[str, str]:
    """Stage name -> hex key, in recipe order (upstream keys feed downstream ones)."""
    keys: dict[str, str] = {}
    for stage in recipe.stages.values():
        keys[stage.name] = _sha256_json(key_payload(stage, keys, data))
    return keys


def key_payload(stage: RecipeStage, upstream_keys: dict[str, str], data: ResolvedData) -> dict:
    """What goes into one stage's key (recorded beside its output, so a cache miss can be explained)."""
    spec = STAGES[stage.kind]
    payload = {
        "stage": stage.kind,
        "config": config_to_dict(stage.config),
        "input": upstream_keys[stage.input] if stage.input else None,
        "references": {field: upstream_keys[name] for field, name in sorted(stage.references.items())},
        "data": data.fingerprint if spec.reads == "data" else None,
        "models": {field: model_fingerprint(str(config_value(stage.config, field)))
                   for field in spec.model_fields if config_value(stage.config, field) is not None},
        "code": code_version(spec.code),
    }
    return payload


@cache
def code_version(modules: tuple[str, ...]) -> str:
    """edgetune's version and a hash of the Python source of `modules` (packages or single modules)."""
    import importlib.util

    digest = hashlib.sha256(edgetune.__version__.encode())
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)  # locates the source without importing it
        if spec is None or spec.origin is None:
            raise RuntimeError(f"stage code {name!r} not found")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        for file in files:
            digest.update(f"{name}/{file.relative_to(origin.parent)}".encode() + b"\0" + file.read_bytes() + b"\0")
    return f"{edgetune.__version__}+{digest.hexdigest()[:16]}"


@cache
def model_fingerprint(name: str) -> str:
    """A local model directory by content; a packaged id by its pinned weights hash; a hub id by name."""
    from edgetune.models.registry import find_packaged_model

    local = Path(name).expanduser()
    if local.exists():
        digest = hashlib.sha256()
        base = local if local.is_dir() else local.parent
        files = sorted(p for p in (local.rglob("*") if local.is_dir() else [local]) if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(base).parts))
        for file in files:
            digest.update(str(file.relative_to(base)).encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    digest.update(block)
        return f"local:{digest.hexdigest()}"
    packaged = find_packaged_model(name)
    if packaged is not None:
        return f"packaged:{packaged.hub_id}:{packaged.weights_sha256}"
    return f"hub:{name}"


def _sha256_json(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
