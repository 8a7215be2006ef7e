"""The typed shape of a recipe: where the data comes from, which stages run, what the report shows.

A recipe is YAML (see recipes/*.yaml); `edgetune.recipes.load` turns it into these dataclasses,
checking every key before any compute. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetune.configuration import setting
from edgetune.data.config import check_validation_fraction
from edgetune.errors import ConfigError

# Keys of a stage entry that belong to the recipe rather than to the stage's own config.
STAGE_KEY = "stage"
INPUT_KEY = "input"


@dataclass
class RecipeData:
    """Labelled text: local files when they exist, else a hub dataset id (which needs a network)."""

    train: str | None = setting(None, help="Training file (CSV/TSV/JSONL/Parquet). Relative paths are read from "
                                           "the current directory.")
    validation: str | None = setting(None, help="Validation file for model selection; carved from train when "
                                                "absent.")
    test: str | None = setting(None, help="File the report's accuracy is measured on; never used to choose "
                                          "anything.")
    hub: str | None = setting(None, help="Hub dataset id used only when the train file is absent (for example "
                                         "PolyAI/banking77).")
    text_column: str | None = setting(None, help="Column holding the text; detected from common names when "
                                                 "absent.")
    label_column: str | None = setting(None, help="Column holding the label; detected from common names when "
                                                  "absent.")
    validation_fraction: float = setting(
        0.1, help="Share of each training class carved off for validation when no validation file is given.")
    split_seed: int = setting(42, help="Seed of that carve-out.")

    def __post_init__(self) -> None:
        if not self.train and not self.hub:
            raise ConfigError("train: required key is missing (give a training file, a hub dataset id, or both)")
        check_validation_fraction(self.validation_fraction)


@dataclass
class ReportSettings:
    """What the per-run report measures besides the stages' own numbers."""

    threads: int = setting(1, help="Threads PyTorch may use while timing the baselines; 1 matches the ONNX "
                                   "timings (a phone app's share).")
    baselines: bool = setting(True, help="Measure the fine-tuned (and teacher) PyTorch models as fp32 baselines, "
                                         "one text at a time over the bench's texts: accuracy, per-class F1 and "
                                         "latency from that one pass.")

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError(f"threads: {self.threads} must be at least 1")


@dataclass
class RecipeStage:
    """One entry of `stages:`: a registered stage kind, the stage it reads from, and its typed config."""

    name: str
    """The entry's key in the recipe, which names its output directory and its rows in the report."""
    kind: str
    """The registered stage (`edgetune.recipes.stages.STAGES`) that runs it."""
    input: str | None
    """The earlier stage whose output this one reads; None for stages that read the data."""
    config: Any
    """The stage's own config dataclass (FinetuneConfig, ExportConfig, ...), validated."""
    references: dict[str, str] = field(default_factory=dict)
    """Config fields whose value names an earlier stage (a distillation teacher): field -> stage name."""


@dataclass
class Recipe:
    """A validated recipe, ready to run."""

    name: str
    description: str
    data: Any
    """The task's data settings: `RecipeData` for classification, the chat task's for chat."""
    stages: dict[str, RecipeStage]
    report: ReportSettings
    task: str = "text-classification"
    """The task every stage runs (the manifests' name); `task: chat` in the YAML."""
    source: Path | None = None
    """The YAML file it came from (None when built from a mapping)."""
    run_dir: str | None = None
    """Default run directory; `runs/<name>` when absent."""
    raw: dict = field(default_factory=dict)
    """The mapping after --set overrides, as the run records it."""
    key_lines: dict[str, int] = field(default_factory=dict)
    """Dotted key -> line in the YAML file, so later checks can point at the line too."""
    overridden: set[str] = field(default_factory=set)
    """Dotted keys set by --set."""

    def upstream(self, stage: RecipeStage) -> list[RecipeStage]:
        """The stages `stage` reads from: its input, then any referenced stage (a teacher)."""
        names = ([stage.input] if stage.input else []) + list(stage.references.values())
        return [self.stages[name] for name in names]

