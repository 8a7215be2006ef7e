"""The toolchain's task registry: what each task (text classification, ...) does at every stage.

The stages (finetune, export, quantize, bundle) know no task: they read an artifact's `task`,
look it up here and call the `Task` it names for what differs (model loading, data encoding,
metrics, parity, golden examples, the bundle's manifest section). A new task is one module that
subclasses `Task` and calls `register_task`, plus the runtime's `edgetune_runtime.tasks` entry
for the class that runs its bundles on a device.
"""

from __future__ import annotations

from edgetune.errors import EdgetuneError
from edgetune.tasks.task import HeldOutText, Task

__all__ = ["HeldOutText", "Task", "TEXT_CLASSIFICATION", "get_task", "register_task", "registered_tasks",
           "task_for_model_config"]

TEXT_CLASSIFICATION = "text-classification"

_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Make `task` available to every stage under `task.name`; registering a name again replaces it."""
    _TASKS[task.name] = task


def registered_tasks() -> tuple[str, ...]:
    return tuple(_TASKS)


def get_task(name: str, where: str = "task") -> Task:
    """The task registered as `name`, or a one-line `EdgetuneError` naming `where` it was asked for."""
    try:
        return _TASKS[name]
    except KeyError:
        raise EdgetuneError(f"{where}: task {name!r} has no toolchain support (registered: "
                            f"{', '.join(_TASKS)}); use an artifact of one of those tasks") from None


def task_for_model_config(model_config: dict) -> Task | None:
    """The task a model directory no edgetune stage wrote is for, told from its config.json."""
    return next((task for task in _TASKS.values() if task.recognizes(model_config)), None)


def _register_builtin_tasks() -> None:
    from edgetune.tasks.classification import ClassificationTask
    from edgetune.tasks.text_generation import TextGenerationTask

    register_task(ClassificationTask())
    register_task(TextGenerationTask())


_register_builtin_tasks()
