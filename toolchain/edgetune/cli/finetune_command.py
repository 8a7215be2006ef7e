"""`edgetune finetune`: the Click layer over `edgetune.finetune.train.finetune`."""

from __future__ import annotations

import click

from edgetune.cli.data_options import data_config_from, data_options
from edgetune.configuration import build_config
from edgetune.finetune.config import DEFAULT_MODEL, FinetuneConfig, LoraSettings

_DEFAULTS = FinetuneConfig()
_LORA_DEFAULTS = LoraSettings()

# Every FinetuneConfig field a user sets on the command line; `edgetune distill` shares them for its student.
_TRAINING_OPTIONS = (
    click.option("--method", type=click.Choice(["full", "lora"]), default=_DEFAULTS.method, show_default=True,
                 help="Update every weight, or train LoRA adapters (merged into the weights on save)."),
    click.option("--epochs", type=float, default=_DEFAULTS.epochs, show_default=True),
    click.option("--lr", "learning_rate", type=float, default=None,
                 help="Peak learning rate. Default: 3e-4 full (small encoders; 2e-5..5e-5 for base-size models), "
                      "1e-3 LoRA."),
    click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True, help="Per process."),
    click.option("--grad-accum", "gradient_accumulation_steps", type=int,
                 default=_DEFAULTS.gradient_accumulation_steps, show_default=True),
    click.option("--max-length", type=int, default=_DEFAULTS.max_length, show_default=True,
                 help="Tokens kept per text."),
    click.option("--warmup-ratio", type=float, default=_DEFAULTS.warmup_ratio, show_default=True),
    click.option("--weight-decay", type=float, default=_DEFAULTS.weight_decay, show_default=True),
    click.option("--label-smoothing", type=float, default=_DEFAULTS.label_smoothing, show_default=True,
                 help="Spread this share of each target over the other classes."),
    click.option("--scheduler", "lr_scheduler", type=click.Choice(["linear", "cosine", "constant_with_warmup"]),
                 default=_DEFAULTS.lr_scheduler, show_default=True),
    click.option("--eval-steps", type=int, default=None,
                 help="Evaluate and checkpoint every N steps. Default: every epoch."),
    click.option("--metric", type=click.Choice(["accuracy", "macro_f1", "loss"]), default=_DEFAULTS.metric,
                 show_default=True, help="Validation metric that selects the best checkpoint."),
    click.option("--patience", "early_stopping_patience", type=int, default=_DEFAULTS.early_stopping_patience,
                 show_default=True, help="Early-stop after N evaluations without improvement; 0 disables."),
    click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=_DEFAULTS.precision,
                 show_default=True, help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU."),
    click.option("--freeze-embeddings/--no-freeze-embeddings", default=_DEFAULTS.freeze_embeddings,
                 show_default=True, help="Keep word embeddings fixed (~30% faster CPU steps for small encoders)."),
    click.option("--group-by-length/--no-group-by-length", default=_DEFAULTS.group_by_length, show_default=True,
                 help="Batch texts of similar length so padding wastes little compute."),
    click.option("--lora-r", type=int, default=_LORA_DEFAULTS.r, show_default=True),
    click.option("--lora-alpha", type=int, default=_LORA_DEFAULTS.alpha, show_default=True),
    click.option("--lora-dropout", type=float, default=_LORA_DEFAULTS.dropout, show_default=True),
    click.option("--lora-target-modules", default=None,
                 help="Comma-separated module names. Default: every attention and MLP linear layer of the "
                      "architecture."),
    click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True),
    click.option("--logging-steps", type=int, default=_DEFAULTS.logging_steps, show_default=True),
)


def training_options(command):
    """Decorate a Click command with the options of `FinetuneConfig` (collected by `finetune_config_from`)."""
    for option in reversed(_TRAINING_OPTIONS):
        command = option(command)
    return command


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """`0,2,4` -> (0, 2, 4); a user error names the option."""
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected layer numbers separated by commas, such as 0,2,4") from None


def finetune_config_from(options: dict, *, model: str, layers: str | None, num_layers: int | None) -> FinetuneConfig:
    """Build a validated config from the `training_options` left in a command's keyword arguments.

    Call it last: every other option must have been popped out of `options` already.
    """
    targets = options.pop("lora_target_modules")
    targets = tuple(m.strip() for m in targets.split(",") if m.strip()) if targets else None
    lora = build_config(LoraSettings, {"r": options.pop("lora_r"), "alpha": options.pop("lora_alpha"),
                                       "dropout": options.pop("lora_dropout"), "target_modules": targets}, "lora")
    options["early_stopping_patience"] = options["early_stopping_patience"] or None
    return FinetuneConfig(model=model, layers=parse_layers(layers), num_layers=num_layers, lora=lora, **options)


@click.command("finetune")
@data_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the fine-tuned model to (created atomically at the end).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Local model directory or hub id.")
@click.option("--layers", default=None,
              help="Keep only these encoder layers, e.g. 0,2,4, initialised from the model's own (DistilBERT-style).")
@click.option("--num-layers", type=int, default=None,
              help="Keep this many evenly spaced encoder layers (3 of 6 keeps 0,2,4): fewer layers, lower latency.")
@training_options
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing output and discard an interrupted run.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep the intermediate checkpoints after success.")
def finetune_command(output: str, model: str, layers: str | None, num_layers: int | None, resume: bool, force: bool,
                     keep_checkpoints: bool, **options) -> None:
    """Fine-tune a pretrained transformer as a text classifier.

    Validates the data and prints its report first, then trains on CUDA when present (else CPU),
    keeps the best checkpoint on validation and writes a Hugging Face model directory with
    metrics.json, training curves (CSV and PNG), data_report.json and an edgetune.json manifest.
    Runs unchanged under `accelerate launch -m edgetune finetune ...` for multi-GPU training.
    """
    from edgetune.finetune.train import finetune

    data_config = data_config_from(options)
    config = finetune_config_from(options, model=model, layers=layers, num_layers=num_layers)
    finetune(data_config, config, output, resume=resume, force=force, keep_checkpoints=keep_checkpoints)
