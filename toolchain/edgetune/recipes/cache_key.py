"""Content addresses of stage outputs: the same inputs, config and code always give the same key.

key = sha256 of (stage kind, stage config, upstream stage keys, data fingerprint for stages that
read the data, fingerprints of the pretrained models named, edgetune version + hash of every project
module the stage's code imports, found from its imports by `code_imports`). A re-run finds the same
directories and skips them; any change re-runs that stage and everything downstream of it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import edgetune
from edgetune.configuration import config_to_dict
from edgetune.recipes.code_imports import CodeRoot, SourceTree, imported_modules, source_digest
from edgetune.recipes.data_source import ResolvedData
from edgetune.recipes.schema import Recipe, RecipeStage
from edgetune.recipes.stages import config_value, stages_for
from edgetune_runtime.hashing import sha256_file, sha256_json


def stage_keys(recipe: Recipe, data: ResolvedData) -> dict[str, str]:
    """Stage name -> hex key, in recipe order (upstream keys feed downstream ones)."""
    keys: dict[str, str] = {}
    for stage in recipe.stages.values():
        keys[stage.name] = sha256_json(key_payload(stage, keys, data, recipe.task))
    return keys


def key_payload(stage: RecipeStage, upstream_keys: dict[str, str], data: ResolvedData, task: str) -> dict:
    """What goes into one stage's key (recorded beside its output, so a cache miss can be explained)."""
    spec = stages_for(task)[stage.kind]
    payload = {
        "stage": stage.kind,
        "config": config_to_dict(stage.config),
        "input": upstream_keys[stage.input] if stage.input else None,
        "references": {field: upstream_keys[name] for field, name in sorted(stage.references.items())},
        "data": data.fingerprint if spec.reads == "data" else None,
        "models": {field: model_fingerprint(str(config_value(stage.config, field)))
                   for field in spec.model_fields if config_value(stage.config, field) is not None},
        "code": code_version(stage.kind, task),
    }
    return payload


@cache  # once per process: the source does not change under a running pipeline
def code_version(kind: str, task: str = "text-classification") -> str:
    """edgetune's version and a hash of every project module the stage `kind` of `task` can run."""
    return code_version_of(stages_for(task)[kind].code_roots(), SourceTree.installed())


def code_version_of(roots: tuple[CodeRoot, ...], tree: SourceTree) -> str:
    """`code_version` for any roots and source tree, uncached (tests point it at an edited copy)."""
    return f"{edgetune.__version__}+{source_digest(imported_modules(roots, tree), tree)[:16]}"


@cache
def model_fingerprint(name: str) -> str:
    """A local model directory by content; a packaged id by its pinned weights hash; a hub id by name."""
    from edgetune.models.registry import find_packaged_model

    local = Path(name).expanduser()
    if local.exists():
        base = local if local.is_dir() else local.parent
        files = sorted(p for p in (local.rglob("*") if local.is_dir() else [local]) if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(base).parts))
        return "local:" + sha256_json({str(file.relative_to(base)): sha256_file(file) for file in files})
    packaged = find_packaged_model(name)
    if packaged is not None:
        return f"packaged:{packaged.hub_id}:{packaged.weights_sha256}"
    return f"hub:{name}"
