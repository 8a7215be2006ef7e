"""Where the labelled text comes from and which columns hold it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgetune.configuration import setting
from edgetune.errors import ConfigError

# Tried in order when no column is named: one list, the runtime's, so a file that trained a model also
# benchmarks it.
from edgetune_runtime.texts_file import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES  # noqa: F401


def check_validation_fraction(fraction: float) -> None:
    """The share carved from train for validation: one rule for classification, chat and recipe data."""
    if not 0.0 < fraction < 0.5:
        raise ConfigError(f"validation_fraction: {fraction} is outside (0, 0.5); 0.1 is typical")


@dataclass
class DataConfig:
    """A labelled text-classification dataset."""

    train: str = setting(help="Training data: a CSV/TSV/JSONL/Parquet path, or a hub dataset id where a network "
                              "exists.")
    validation: str | None = setting(None, help="Validation data used for model selection. Default: a stratified "
                                                "share of train (validation_fraction).")
    test: str | None = setting(None, help="Held-out data reported at the end and never used to choose anything.")
    text_column: str | None = setting(None, help="Column holding the text. Default: the first of text, sentence, "
                                                 "content, utterance, ... that exists.")
    label_column: str | None = setting(None, help="Column holding the label. Default: the first of label, labels, "
                                                  "category, intent, ... that exists.")
    validation_fraction: float = setting(
        0.1, help="Share of each training class carved off for validation when no validation data is given.")
    split_seed: int = setting(42, help="Seed of the validation carve-out, so every run selects on the same rows.")

    def __post_init__(self) -> None:
        if not self.train or not str(self.train).strip():
            raise ConfigError("train: a training data path or hub id is required")
        check_validation_fraction(self.validation_fraction)

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> DataConfig:
        """The data config a model's edgetune.json recorded; older models stored `split_seed` as `seed`."""
        values = dict(recorded)
        if "seed" in values:
            values.setdefault("split_seed", values.pop("seed"))
        return cls(**values)
