"""Which stages, data settings and report a recipe of each task has: one entry per task.

`task: chat` at the top of a recipe picks the chat entry; recipes without the key are text
classification. Entries name their modules as strings and are imported only for the task a recipe
runs, so a task's stages never enter another task's stage cache keys (`recipes/code_imports.py`
follows imports, and this module is imported by the runner, not by any stage).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from edgetune.errors import ConfigError


@dataclass(frozen=True)
class RecipeTask:
    stages: str
    """`module:NAME` of the task's `dict[str, StageSpec]`."""
    data_class: str
    """`module:Class` a recipe's `data:` mapping is validated into."""
    resolve_data: str
    """`module:function(data, check_hub=...) -> ResolvedData`."""
    write_report: str
    """`module:function(recipe, result) -> list[Path]`, called after the last stage."""

    def load(self, attribute: str) -> Any:
        module, name = getattr(self, attribute).split(":")
        return getattr(importlib.import_module(module), name)


RECIPE_TASKS: dict[str, RecipeTask] = {
    "text-classification": RecipeTask("edgetune.recipes.stages:STAGES", "edgetune.recipes.schema:RecipeData",
                                      "edgetune.recipes.data_source:resolve_data",
                                      "edgetune.recipes.report:write_run_report"),
    "text-generation": RecipeTask("edgetune.tasks.text_generation.stages:CHAT_STAGES",
                                  "edgetune.data.chat_config:ChatDataConfig",
                                  "edgetune.tasks.text_generation.recipe_data:resolve_chat_data",
                                  "edgetune.tasks.text_generation.run_report:write_chat_run_report"),
}


def recipe_task(task: str) -> RecipeTask:
    try:
        return RECIPE_TASKS[task]
    except KeyError:
        raise ConfigError(f"task: {task!r} has no recipes yet (recipes exist for {', '.join(RECIPE_TASKS)})") from None
