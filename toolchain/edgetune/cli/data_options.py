"""The dataset options shared by every command that reads labelled text."""

from __future__ import annotations

from collections.abc import Callable

import click

from edgetune.data.config import DataConfig

_OPTIONS = (
    click.option("--train", "train", required=True,
                 help="Training data: CSV, TSV, JSONL or Parquet file, or a hub dataset id (needs a network)."),
    click.option("--validation", default=None,
                 help="Validation data for model selection. Default: a stratified share of --train."),
    click.option("--test", default=None, help="Test data, reported at the end and never used to choose anything."),
    click.option("--text-column", default=None,
                 help="Column with the text. Default: the first of text, sentence, content, utterance, ..."),
    click.option("--label-column", default=None,
                 help="Column with the label. Default: the first of label, labels, category, intent, ..."),
    click.option("--validation-fraction", type=float, default=0.1, show_default=True,
                 help="Share of each class carved from --train when no --validation is given."),
    click.option("--split-seed", type=int, default=42, show_default=True, help="Seed of that carve-out."),
)


def data_options(command: Callable) -> Callable:
    """Decorate a Click command with the dataset options (collected by `data_config_from`)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def data_config_from(options: dict) -> DataConfig:
    """Pop the dataset options out of a command's keyword arguments and build a validated config."""
    return DataConfig(
        train=options.pop("train"),
        validation=options.pop("validation"),
        test=options.pop("test"),
        text_column=options.pop("text_column"),
        label_column=options.pop("label_column"),
        validation_fraction=options.pop("validation_fraction"),
        seed=options.pop("split_seed"),
    )
