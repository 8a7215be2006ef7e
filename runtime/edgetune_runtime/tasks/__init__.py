"""The runtime's task registry: which class runs a bundle of each task, and where its manifest section is.

The envelope (open, verify the seal and every file's hash, make the session, drive the golden
check) knows no task; `Bundle.load` reads `manifest["task"]` and returns the class registered
for it. A new task is a module here plus one `register_task` call (tests may register their own):
a subclass of `edgetune_runtime.envelope.Bundle` that implements the envelope's task hooks
(`_read_section`, `_prepare`, `_binding_probe_feeds`, `_parse_golden_example`, `_check_golden_example`
or `_golden_mismatches`) and its own prediction API; `tasks/classification.py` is the worked example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from edgetune_runtime.errors import BundleError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """The manifest's `task` value, e.g. `text-classification`."""
    section: str
    """The manifest key holding what only this task reads, e.g. `classification`."""
    bundle_class: str
    """`module:Class` of the bundle class that runs it; imported when such a bundle loads."""
    section_files: tuple[str, ...] = ()
    """Keys of the section that name bundle files the runtime opens (each must be a listed, hashed file)."""
    bench: str | None = None
    """The module whose `TASK_BENCH` (a `TaskBench`) `edgetune-runtime bench` runs for the task's bundles. A module
    name, not `module:name` like `bundle_class`: only the bench imports it, and the toolchain's stage code keys
    follow `module:name` strings, so the stages that load bundles do not hash bench code they never run."""


@dataclass(frozen=True)
class TaskBench:
    """A task's benchmark, as `edgetune-runtime bench` dispatches to it."""

    config: type
    """Its config dataclass: the command's options that are its fields are passed to it, the others refused."""
    run: Callable
    """`run(bundle_path, config, *, command, progress)` -> a result with `write(path)`."""
    format_table: Callable
    """`format_table(result)` -> the summary printed on stdout."""


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> None:
    """Make bundles of `spec.name` loadable; registering a name again replaces it."""
    _TASKS[spec.name] = spec


def unregister_task(name: str) -> None:
    """Forget task `name` (a test's toy task, once the test is done); unknown names are ignored."""
    _TASKS.pop(name, None)


def registered_tasks() -> tuple[str, ...]:
    return tuple(_TASKS)


def task_spec(task: str) -> TaskSpec:
    try:
        return _TASKS[task]
    except KeyError:
        raise BundleError(f"task {task!r} is not supported by this runtime "
                          f"(supported: {', '.join(_TASKS)})") from None


def section_key(task: str) -> str:
    return task_spec(task).section


def section_files(manifest: dict) -> list[tuple[str, object]]:
    """(role, file name) of each file the task's section names, for the manifest's file checks."""
    spec = _TASKS.get(manifest.get("task"))
    section = manifest.get(spec.section) if spec else None
    if not isinstance(section, dict):
        return []
    return [(key, section.get(key)) for key in spec.section_files]


def task_bench(task: str) -> TaskBench:
    """The bench of `task`'s bundles; `BundleError` when the task has none."""
    spec = task_spec(task)
    if spec.bench is None:
        raise BundleError(f"task {task!r} has no benchmark in this runtime")
    return importlib.import_module(spec.bench).TASK_BENCH


def bundle_class(task: str) -> type:
    """The class that runs bundles of `task`: `bundle_class(task)(directory, manifest_dict)` builds one
    from checked files (the toolchain's unsealed staging folder); `Bundle.load(path)` verifies first."""
    module, name = task_spec(task).bundle_class.split(":")
    return getattr(importlib.import_module(module), name)


register_task(TaskSpec("text-classification", "classification",
                       "edgetune_runtime.tasks.classification:ClassificationBundle",
                       section_files=("labels_file", "text_model"),
                       bench="edgetune_runtime.bench"))
register_task(TaskSpec("text-generation", "generation", "edgetune_runtime.tasks.generation.bundle:GenerationBundle",
                       section_files=("genai_config",),
                       bench="edgetune_runtime.tasks.generation.bench"))
