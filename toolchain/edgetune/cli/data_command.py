"""`edgetune data`: look at a dataset before training on it."""

from __future__ import annotations

import click

from edgetune.cli.data_options import DATA_OPTIONS


@click.group()
def data() -> None:
    """Inspect and validate labelled text data."""


@data.command()
@DATA_OPTIONS
@click.option("--model", default=None,
              help="Count lengths in this model's tokens (a path or hub id). Default: whitespace words.")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Report how many texts exceed this many tokens.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON to this file.")
def inspect(model: str | None, max_length: int | None, report_path: str | None, **options) -> None:
    """Validate a dataset and print rows, class balance, lengths, duplicates and train/test leakage."""
    from edgetune.atomic import write_json_atomic
    from edgetune.data.load import load_labelled_data
    from edgetune.data.report import build_data_report, format_data_report

    labelled = load_labelled_data(DATA_OPTIONS.build(options))
    count_tokens = None
    if model:
        from transformers import AutoTokenizer

        from edgetune.models.resolve import resolve_model

        resolved = resolve_model(model)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **resolved.from_pretrained_kwargs())

        def count_tokens(texts: list[str]) -> list[int]:
            return [len(ids) for ids in tokenizer(texts)["input_ids"]]

    report = build_data_report(labelled, count_tokens, max_length)
    click.echo(format_data_report(report))
    if report_path:
        write_json_atomic(report_path, report)
        click.echo(f"report written to {report_path}")
