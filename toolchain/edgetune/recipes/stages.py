"""The one registry of pipeline stages: name -> config class, library function, what it reads and makes.

`edgetune run` builds every stage from here and the CLI commands call the same library functions
with the same config classes (tests/test_recipes.py checks that the two agree). Config classes are
light; each stage's library function is imported only when the stage runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgetune.bundle.config import BundleConfig
from edgetune.distill.config import DistillConfig
from edgetune.export.config import ExportConfig
from edgetune.finetune.config import FinetuneConfig
from edgetune.quantize.config import QuantizeConfig
from edgetune.recipes.bench_stage import BenchStageConfig
from edgetune.recipes.code_imports import CodeRoot
from edgetune.tune.config import TuneConfig

Artifact = Literal["data", "model", "onnx", "bundle", "bench", "evaluation"]


@dataclass
class StageCall:
    """Everything one stage run gets: the data, its config, where its input is and where to write."""

    data: Any
    """The task's data config (`DataConfig` for classification, `ChatDataConfig` for chat)."""
    config: Any
    output_dir: Path
    input_dir: Path | None = None
    references: dict[str, Path] = field(default_factory=dict)
    """Config fields that named an earlier stage, mapped to that stage's output directory."""


@dataclass(frozen=True)
class StageSpec:
    """How the runner (and the CLI) runs one kind of stage."""

    kind: str
    config_class: type
    function: str
    """The library function, as `module:name`; the CLI command of the same name calls it too."""
    cli_command: str
    """The command that runs the same measurement by hand: `edgetune <command>`, or
    `edgetune-runtime <command>` with `cli_program`."""
    reads: Artifact
    """What the stage's input is: the recipe's data, or an earlier stage's artifact."""
    makes: Artifact
    call: Callable[[StageSpec, StageCall], Any]
    """Adapter from a `StageCall` to the library function's own signature."""
    model_fields: tuple[str, ...] = ()
    """Config fields (dotted for nested configs) naming a pretrained model, resolved when a recipe is validated."""
    reference_fields: dict[str, Artifact] = field(default_factory=dict)
    """Config fields that may name an earlier stage (its output directory is passed in)."""
    cli_program: Literal["edgetune", "edgetune-runtime"] = "edgetune"
    cli_function: str | None = None
    """The function the CLI command calls when it is not `function` itself (which then calls it)."""

    def library_function(self) -> Callable:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)

    def code_roots(self) -> tuple[CodeRoot, ...]:
        """Where the stage's code starts: its library function's module, its config's module and its
        adapter here; the cache key hashes every project module these import (`recipes/code_imports.py`)."""
        adapter = getattr(self.call, "__qualname__", "")
        # A lambda or nested function has no top-level name to follow: its whole module is followed instead.
        adapter_root = CodeRoot(getattr(self.call, "__module__", None) or __name__,
                                adapter if adapter.isidentifier() else None)
        return (CodeRoot(self.function.split(":")[0]), CodeRoot(self.config_class.__module__), adapter_root)


# Adapters from a `StageCall` to a library function's own signature, shared by every task's stage table.
def call_training(spec: StageSpec, call: StageCall):
    from edgetune.finetune.train import work_directory_for

    # A run killed mid-training left checkpoints beside the output: continue from the last one.
    checkpoints = work_directory_for(call.output_dir) / "checkpoints"
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    return spec.library_function()(call.data, call.config, call.output_dir, resume=resume)


def call_tune(spec: StageSpec, call: StageCall):
    from edgetune.tune.stage import tune_into

    return tune_into(spec.library_function(), call.data, call.config, call.output_dir)


def call_on_input(spec: StageSpec, call: StageCall):
    return spec.library_function()(call.input_dir, call.output_dir, call.config)


def call_on_input_with_data(spec: StageSpec, call: StageCall):
    return spec.library_function()(call.input_dir, call.output_dir, call.config, call.data)


STAGES: dict[str, StageSpec] = {
    spec.kind: spec for spec in (
        StageSpec("finetune", FinetuneConfig, "edgetune.finetune.train:finetune", "finetune", "data", "model",
                  call_training, model_fields=("model",)),
        StageSpec("distill", DistillConfig, "edgetune.distill.train:distill", "distill", "data", "model",
                  call_training, model_fields=("student.model",), reference_fields={"teacher": "model"}),
        StageSpec("tune", TuneConfig, "edgetune.tune.search:tune", "tune", "data", "model", call_tune,
                  model_fields=("base.model",), reference_fields={"teacher": "model"}),
        StageSpec("export", ExportConfig, "edgetune.export.onnx_export:export_onnx", "export", "model", "onnx",
                  call_on_input),
        StageSpec("quantize", QuantizeConfig, "edgetune.quantize.run:quantize", "quantize", "onnx", "onnx",
                  call_on_input),
        StageSpec("bundle", BundleConfig, "edgetune.bundle.build:build_bundle", "bundle", "onnx", "bundle",
                  call_on_input),
        StageSpec("bench", BenchStageConfig, "edgetune.recipes.bench_stage:bench_bundle", "bench", "bundle", "bench",
                  call_on_input_with_data, cli_program="edgetune-runtime",
                  cli_function="edgetune_runtime.bench:bench"),
    )
}


def stages_for(task: str) -> dict[str, StageSpec]:
    """The stage kinds a recipe of `task` can use (`edgetune.recipes.tasks`)."""
    from edgetune.recipes.tasks import recipe_task

    return recipe_task(task).load("stages")


def config_value(config: Any, dotted: str) -> Any:
    """The value of a (possibly nested, `student.model`) config field."""
    for name in dotted.split("."):
        config = getattr(config, name)
    return config
