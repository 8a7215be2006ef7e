"""One command, a flag set per task: `--task` (or the input artifact's manifest) picks which config's
flags the rest of the command line is parsed with.

`edgetune finetune --task chat` takes the chat data and SFT flags, `edgetune finetune` the
classifier's; `edgetune export MODEL OUT` reads MODEL's `edgetune.json` and takes the flags of that
model's task. Each set is generated from the task's config classes (`ConfigOptions`), so a task adds
its flags by naming its configs here, never by editing a command's body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from edgetune.cli.config_options import ConfigOptions

TASK_ALIASES = {"chat": "text-generation", "generation": "text-generation", "classification": "text-classification"}
"""Short names a user types for the manifest's task names."""


def canonical_task(name: str) -> str:
    return TASK_ALIASES.get(name, name)


def _params(option_sets: Sequence[ConfigOptions | Callable]) -> list[click.Parameter]:
    def holder() -> None: ...

    for decorate in reversed(option_sets):
        holder = decorate(holder)
    return list(reversed(getattr(holder, "__click_params__", [])))


class TaskCommand(click.Command):
    """A Click command whose options after the common ones depend on the task being run."""

    def __init__(self, *args, task_options: dict[str, Sequence[ConfigOptions | Callable]],
                 infer_task: Callable[[list[str]], str | None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.common_params = list(self.params)
        self.task_params = {task: _params(sets) for task, sets in task_options.items()}
        self.default_task = next(iter(task_options))
        self.infer_task = infer_task
        choices = sorted({*self.task_params, *(alias for alias, task in TASK_ALIASES.items()
                                               if task in self.task_params)})
        self.task_option = click.Option(
            ["--task"], type=click.Choice(choices), default=None,
            help=f"Which task's flags apply. Default: the input artifact's task where there is one, else "
                 f"{self.default_task}. `--task {choices[0]} --help` lists that task's flags.")
        self.params = self.params_for(self.default_task)

    def params_for(self, task: str) -> list[click.Parameter]:
        """The command's parameters when it runs `task` (the default task's before parsing, for tools
        that read `command.params`)."""
        return [*self.common_params, self.task_option, *self.task_params[task]]

    def task_from_args(self, args: list[str]) -> str:
        for index, arg in enumerate(args):
            if arg == "--task" and index + 1 < len(args):
                return canonical_task(args[index + 1])
            if arg.startswith("--task="):
                return canonical_task(arg.split("=", 1)[1])
        inferred = self.infer_task(args) if self.infer_task else None
        return canonical_task(inferred) if inferred else self.default_task

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        task = self.task_from_args(args)
        if task not in self.task_params:
            task = self.default_task  # Click's choice check on --task then names the valid ones
        ctx.meta["edgetune.task"] = task
        self.params = self.params_for(task)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        ctx.params["task"] = ctx.meta["edgetune.task"]
        return super().invoke(ctx)


def task_command(name: str, task_options: dict[str, Sequence[ConfigOptions | Callable]],
                 infer_task: Callable[[list[str]], str | None] | None = None) -> Callable:
    """`@task_command("finetune", {"text-classification": [...], "text-generation": [...]})`: the first
    task is the default. The decorated function receives `task` (the manifest name) and every flag."""
    return click.command(name, cls=TaskCommand, task_options=task_options, infer_task=infer_task)


def task_of_input_dir() -> Callable[[list[str]], str | None]:
    """Infer the task from the `edgetune.json` of the input directory named on the command line."""
    def infer(args: list[str]) -> str | None:
        from pathlib import Path

        from edgetune.stage_manifest import read_stage_manifest

        # The first argument naming a directory: option values are not directories. A model no edgetune
        # stage wrote (a Hugging Face chat model) is told by its config.json's architectures.
        for arg in args:
            if not arg.startswith("-") and Path(arg).is_dir():
                try:
                    return read_stage_manifest(Path(arg)).get("task") or _task_of_model_config(Path(arg))
                except Exception:  # a damaged manifest is reported by the stage itself, with its path
                    return None
        return None

    return infer


def _task_of_model_config(directory) -> str | None:
    import json

    from edgetune.tasks import task_for_model_config

    config_path = directory / "config.json"
    if not config_path.is_file():
        return None
    task = task_for_model_config(json.loads(config_path.read_text(encoding="utf-8")))
    return task.name if task else None
