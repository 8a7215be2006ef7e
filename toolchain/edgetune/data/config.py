"""Where the labelled text comes from and which columns hold it."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.errors import ConfigError
# Tried in order when no column is named: one list, the runtime's, so a file that trained a model also
# benchmarks it.
from edgetune_runtime.texts_file import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES  # noqa: F401


@dataclass
class DataConfig:
    """A labelled text-classification dataset."""

    train: str
    """Training data: a CSV/TSV/JSONL/Parquet path, or a hub dataset id where a network exists."""
    validation: str | None = None
    """Validation data used for model selection; carved from `train` when absent."""
    test: str | None = None
    """Held-out data reported at the end and never used to choose anything."""
    text_column: str | None = None
    """Column holding the text; detected from common names when absent."""
    label_column: str | None = None
    """Column holding the label; detected from common names when absent."""
    validation_fraction: float = 0.1
    """Share of each training class carved off for validation when no validation data is given."""
    seed: int = 42
    """Seed of the validation carve-out, so every run selects on the same rows."""

    def __post_init__(self) -> None:
        if not self.train or not str(self.train).strip():
            raise ConfigError("train: a training data path or hub id is required")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ConfigError(
                f"validation_fraction: {self.validation_fraction} is outside (0, 0.5); 0.1 is typical"
            )
