"""Held-out text for checks after training: the split a fine-tuned model recorded, or a given file."""

from __future__ import annotations

from pathlib import Path

from edgetune.data.config import DataConfig
from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import read_stage_manifest


def heldout_split(model_dir: Path, split: str, texts_file: str | None = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of `split` ('train', 'validation' or 'test') as the model saw it, or of `texts_file`.

    Labels are empty strings when `texts_file` has no label column.
    """
    if texts_file:
        from edgetune.data.load import pick_text_and_label
        from edgetune.data.read import read_table

        return pick_text_and_label(read_table(texts_file), texts_file)
    data = recorded_data(model_dir)
    chosen = {"train": data.train, "validation": data.validation, "test": data.test}[split]
    if chosen is None:
        raise EdgetuneError(f"{model_dir} was trained without a {split} split; pass --texts FILE with held-out text")
    return chosen.texts, chosen.labels


def recorded_data(model_dir: Path):
    """The splits exactly as `edgetune finetune` built them (carved validation included), read once."""
    from edgetune.data.load import load_labelled_data

    data_config = read_stage_manifest(model_dir).get("data", {}).get("config")
    if not data_config:
        raise EdgetuneError(
            f"{model_dir} records no training data (no edgetune.json from `edgetune finetune`); "
            "pass --texts FILE with held-out text"
        )
    return load_labelled_data(DataConfig.from_recorded(data_config))
