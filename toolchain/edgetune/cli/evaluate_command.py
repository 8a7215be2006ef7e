"""`edgetune evaluate --task chat`: the Click layer over `edgetune.tasks.text_generation.evaluate.evaluate_chat`."""

from __future__ import annotations

from pathlib import Path

import click

from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.task_options import task_command
from edgetune.errors import EdgetuneError
from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig

CHAT_EVALUATE_OPTIONS = ConfigOptions(ChatEvaluateConfig)


def named_models(arguments: tuple[str, ...]) -> list[tuple[str, Path]]:
    """`NAME=PATH` or `PATH` (named after its folder) for each model argument."""
    models = []
    for argument in arguments:
        name, separator, path = argument.partition("=")
        if not separator or not name or Path(argument).exists():
            name, path = Path(argument).name or argument, argument
        models.append((name, _model_directory(path)))
    names = [name for name, _ in models]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise EdgetuneError(f"two models are named {repeated!r}; name them apart with NAME=PATH")
    return models


def _model_directory(path: str) -> Path:
    """A directory as given; a packaged or hub id (the base model, say) resolved to its local directory."""
    if Path(path).exists():
        return Path(path)
    from edgetune.models.gguf_dir import resolve_model_directory

    return Path(resolve_model_directory(path).path)


@task_command("evaluate", {"text-generation": [CHAT_EVALUATE_OPTIONS]})
@click.argument("models", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write generations.jsonl, scores.json and edgetune.json to (created atomically).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def evaluate_command(task: str, models: tuple[str, ...], output: str, force: bool, **options) -> None:
    """Score chat MODELS side by side on the same held-out prompts; the first is the base.

    Each model is a Hugging Face causal-LM directory (run in PyTorch) or an ONNX chat artifact from
    export/quantize (run by the runtime's decode loop), optionally named NAME=PATH. Reported per
    model: perplexity of the reference answers, ROUGE-L F of greedy answers, intent fidelity (share
    of answers an intent judge, trained once per dataset with edgetune's classification path, reads
    as the prompt's intent; its accuracy on the references is shown beside it), share of answers in
    the data's {{Placeholder}} style and mean answer length; then each model minus the base.
    """
    from edgetune.tasks.text_generation.evaluate import evaluate_chat

    config = CHAT_EVALUATE_OPTIONS.build(options)
    report = evaluate_chat(named_models(models), config, output, force=force)
    click.echo(report.table())
    click.echo(f"written to {report.output_dir} ({len(report.generations)} prompts)")
