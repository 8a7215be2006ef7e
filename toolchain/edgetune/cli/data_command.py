"""`edgetune data`: look at a dataset before training on it."""

from __future__ import annotations

import click

from edgetune.cli.data_options import CHAT_DATA_OPTIONS, DATA_OPTIONS
from edgetune.cli.task_options import task_command


@click.group()
def data() -> None:
    """Inspect and validate labelled text data and chat conversations."""


@task_command("inspect", {"text-classification": [DATA_OPTIONS], "text-generation": [CHAT_DATA_OPTIONS]})
@click.option("--model", default=None,
              help="Count lengths in this model's tokens (a path or hub id; with --task chat, after its chat "
                   "template). Default: whitespace words.")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Report how many texts (conversations) exceed this many tokens.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON to this file.")
def inspect(task: str, model: str | None, max_length: int | None, report_path: str | None, **options) -> None:
    """Validate a dataset and print rows, class balance, lengths, duplicates and train/test leakage.

    With --task chat: conversations per split and p50/p90/p99/max token lengths of prompts, answers and
    whole conversations under the model's chat template, the figures max_length is chosen from.
    """
    from edgetune.atomic import write_json_atomic

    if task == "text-generation":
        report, text = _inspect_chat(options, model, max_length)
    else:
        report, text = _inspect_labelled(options, model, max_length)
    click.echo(text)
    if report_path:
        write_json_atomic(report_path, report)
        click.echo(f"report written to {report_path}")


data.add_command(inspect)


def _inspect_labelled(options: dict, model: str | None, max_length: int | None) -> tuple[dict, str]:
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
    return report, format_data_report(report)


def _inspect_chat(options: dict, model: str | None, max_length: int | None) -> tuple[dict, str]:
    from edgetune.data.chat import load_chat_data
    from edgetune.tasks.text_generation.data_report import build_chat_data_report, format_chat_data_report

    chat = load_chat_data(CHAT_DATA_OPTIONS.build(options))
    tokenizer = None
    if model:
        from edgetune.models.gguf_dir import resolve_model_directory
        from edgetune.tasks.text_generation.sft import load_chat_tokenizer

        tokenizer = load_chat_tokenizer(resolve_model_directory(model))
    report = build_chat_data_report(chat, tokenizer, max_length)
    return report, format_chat_data_report(report)
