"""`edgetune finetune`: the Click layer over `edgetune.finetune.train.finetune` (classifiers) and
`edgetune.tasks.text_generation.sft.finetune_chat` (`--task chat`)."""

from __future__ import annotations

import click

from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.data_options import CHAT_DATA_OPTIONS, DATA_OPTIONS
from edgetune.cli.task_options import task_command
from edgetune.finetune.config import FinetuneConfig
from edgetune.tasks.text_generation.sft_config import ChatFinetuneConfig

FINETUNE_OPTIONS = ConfigOptions(FinetuneConfig)
CHAT_FINETUNE_OPTIONS = ConfigOptions(ChatFinetuneConfig)


def training_run_options(command):
    """The flags of a training run that are not settings of the model: shared by finetune and distill."""
    for option in reversed((
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint."),
        click.option("--force", is_flag=True, help="Replace an existing output and discard an interrupted run."),
        click.option("--keep-checkpoints", is_flag=True, help="Keep the intermediate checkpoints after success."),
    )):
        command = option(command)
    return command


@task_command("finetune", {"text-classification": [DATA_OPTIONS, FINETUNE_OPTIONS],
                           "text-generation": [CHAT_DATA_OPTIONS, CHAT_FINETUNE_OPTIONS]})
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the fine-tuned model to (created atomically at the end).")
@training_run_options
def finetune_command(task: str, output: str, resume: bool, force: bool, keep_checkpoints: bool, **options) -> None:
    """Fine-tune a pretrained transformer as a text classifier, or a chat model (`--task chat`).

    Validates the data and prints its report first, then trains on CUDA when present (else CPU),
    keeps the best checkpoint on validation and writes a Hugging Face model directory with
    metrics.json, training curves (CSV and PNG), data_report.json and an edgetune.json manifest.
    With --task chat: supervised fine-tuning (TRL) on prompt -> response conversations, loss on the
    answers only, LoRA by default; `--task chat --help` lists its flags.
    Runs unchanged under `accelerate launch -m edgetune finetune ...` for multi-GPU training.
    """
    if task == "text-generation":
        from edgetune.tasks.text_generation.sft import finetune_chat

        finetune_chat(CHAT_DATA_OPTIONS.build(options), CHAT_FINETUNE_OPTIONS.build(options), output,
                      resume=resume, force=force, keep_checkpoints=keep_checkpoints)
        return
    from edgetune.finetune.train import finetune

    data_config = DATA_OPTIONS.build(options)
    config = FINETUNE_OPTIONS.build(options)
    finetune(data_config, config, output, resume=resume, force=force, keep_checkpoints=keep_checkpoints)
