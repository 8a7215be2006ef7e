"""Check that a validated recipe can run here: its data and models exist, before any compute.

`edgetune validate` prints the notes; `edgetune run` does the same checks first, so a typo in a
path fails in a second rather than after an hour of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgetune.errors import ConfigError, ModelNotFoundError
from edgetune.recipes.data_source import ResolvedData
from edgetune.recipes.load import locate
from edgetune.recipes.schema import Recipe
from edgetune.recipes.stages import config_value, stages_for
from edgetune.recipes.tasks import recipe_task


@dataclass
class RecipeCheck:
    data: ResolvedData
    notes: list[str] = field(default_factory=list)


def check_recipe(recipe: Recipe, *, check_hub: bool = True) -> RecipeCheck:
    """Resolve the data and every model the recipe names; errors name the file, line and key."""
    try:
        data = recipe_task(recipe.task).load("resolve_data")(recipe.data, check_hub=check_hub)
        notes = [f"data: {data.description}"]
        for stage in recipe.stages.values():
            spec = stages_for(recipe.task)[stage.kind]
            for field_name in spec.model_fields:
                value = config_value(stage.config, field_name)
                if value is None:
                    continue
                where = f"stages.{stage.name}.{field_name}"
                try:
                    notes.append(f"{where}: {_check_model(str(value))}")
                except ConfigError as error:
                    raise ConfigError(f"{where}: {error}") from None
            for field_name in spec.reference_fields:
                value = getattr(stage.config, field_name, None)
                if field_name not in stage.references and value is not None and not Path(str(value)).exists():
                    earlier = ", ".join(name for name in recipe.stages if name != stage.name)
                    raise ConfigError(f"stages.{stage.name}.{field_name}: {value!r} is neither an earlier stage "
                                      f"({earlier}) nor an existing path")
    except ConfigError as error:
        if recipe.source is None:
            raise
        raise ConfigError(locate(str(error), recipe.source, recipe.key_lines, recipe.overridden)) from None
    return RecipeCheck(data, notes)


def _check_model(name: str) -> str:
    """Where `name` will be loaded from; raises `ConfigError` when it cannot be found (no download here)."""
    from edgetune.models.registry import find_packaged_model
    from edgetune.models.resolve import resolve_model

    if Path(name).expanduser().exists() or find_packaged_model(name) is not None:
        try:
            found = resolve_model(name, allow_download=False)
            return f"{name} ({found.source}: {found.path})"
        except ModelNotFoundError as error:
            if Path(name).expanduser().exists():
                raise ConfigError(f"{error}") from None
            return f"{name} (not cached: it will be fetched from the package index; {error})"
    try:
        from huggingface_hub import snapshot_download

        return f"{name} (hugging face cache: {snapshot_download(name, local_files_only=True)})"
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        pass
    searched = f"model {name!r} is not a local path, not a packaged model and not in the Hugging Face cache"
    fix = "pass a local model directory, or a packaged model id (`edgetune models list`)"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"{searched}, and HF_HUB_OFFLINE is set; {fix}")
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(name, timeout=10)
    except Exception as error:  # noqa: BLE001 - offline, unknown or private models all end here
        raise ConfigError(f"{searched}, and the hub did not answer ({type(error).__name__}); {fix}") from None
    return f"{name} (not cached: it will be downloaded from the Hugging Face hub)"
