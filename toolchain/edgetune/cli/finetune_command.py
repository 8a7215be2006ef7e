"""`edgetune finetune`: the Click layer over `edgetune.finetune.train.finetune`."""

from __future__ import annotations

import click

from edgetune.cli.data_options import data_config_from, data_options
from edgetune.configuration import build_config
from edgetune.finetune.config import DEFAULT_MODEL, FinetuneConfig, LoraSettings

_DEFAULTS = FinetuneConfig()
_LORA_DEFAULTS = LoraSettings()


@click.command("finetune")
@data_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the fine-tuned model to (created atomically at the end).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Local model directory or hub id.")
@click.option("--method", type=click.Choice(["full", "lora"]), default=_DEFAULTS.method, show_default=True,
              help="Update every weight, or train LoRA adapters (merged into the weights on save).")
@click.option("--epochs", type=float, default=_DEFAULTS.epochs, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=None,
              help="Peak learning rate. Default: 3e-4 full (small encoders; 2e-5..5e-5 for base-size models), "
                   "1e-3 LoRA.")
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True, help="Per process.")
@click.option("--grad-accum", "gradient_accumulation_steps", type=int,
              default=_DEFAULTS.gradient_accumulation_steps, show_default=True)
@click.option("--max-length", type=int, default=_DEFAULTS.max_length, show_default=True,
              help="Tokens kept per text.")
@click.option("--warmup-ratio", type=float, default=_DEFAULTS.warmup_ratio, show_default=True)
@click.option("--weight-decay", type=float, default=_DEFAULTS.weight_decay, show_default=True)
@click.option("--label-smoothing", type=float, default=_DEFAULTS.label_smoothing, show_default=True,
              help="Spread this share of each target over the other classes.")
@click.option("--scheduler", "lr_scheduler", type=click.Choice(["linear", "cosine", "constant_with_warmup"]),
              default=_DEFAULTS.lr_scheduler, show_default=True)
@click.option("--eval-steps", type=int, default=None,
              help="Evaluate and checkpoint every N steps. Default: every epoch.")
@click.option("--metric", type=click.Choice(["accuracy", "macro_f1", "loss"]), default=_DEFAULTS.metric,
              show_default=True, help="Validation metric that selects the best checkpoint.")
@click.option("--patience", "early_stopping_patience", type=int, default=_DEFAULTS.early_stopping_patience,
              show_default=True, help="Early-stop after N evaluations without improvement; 0 disables.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=_DEFAULTS.precision,
              show_default=True, help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU.")
@click.option("--freeze-embeddings/--no-freeze-embeddings", default=_DEFAULTS.freeze_embeddings,
              show_default=True, help="Keep word embeddings fixed (~30% faster CPU steps for small encoders).")
@click.option("--group-by-length/--no-group-by-length", default=_DEFAULTS.group_by_length, show_default=True,
              help="Batch texts of similar length so padding wastes little compute.")
@click.option("--lora-r", type=int, default=_LORA_DEFAULTS.r, show_default=True)
@click.option("--lora-alpha", type=int, default=_LORA_DEFAULTS.alpha, show_default=True)
@click.option("--lora-dropout", type=float, default=_LORA_DEFAULTS.dropout, show_default=True)
@click.option("--lora-target-modules", default=None,
              help="Comma-separated module names. Default: every attention and MLP linear layer of the architecture.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--logging-steps", type=int, default=_DEFAULTS.logging_steps, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing output and discard an interrupted run.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep the intermediate checkpoints after success.")
def finetune_command(output: str, resume: bool, force: bool, keep_checkpoints: bool, lora_r: int,
                     lora_alpha: int, lora_dropout: float, lora_target_modules: str | None,
                     early_stopping_patience: int, **options) -> None:
    """Fine-tune a pretrained transformer as a text classifier.

    Validates the data and prints its report first, then trains on CUDA when present (else CPU),
    keeps the best checkpoint on validation and writes a Hugging Face model directory with
    metrics.json, training curves (CSV and PNG), data_report.json and an edgetune.json manifest.
    Runs unchanged under `accelerate launch -m edgetune finetune ...` for multi-GPU training.
    """
    from edgetune.finetune.train import finetune

    data_config = data_config_from(options)
    targets = tuple(m.strip() for m in lora_target_modules.split(",") if m.strip()) if lora_target_modules else None
    config = FinetuneConfig(
        **options,
        early_stopping_patience=early_stopping_patience or None,
        lora=build_config(LoraSettings, {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                                         "target_modules": targets}, "lora"),
    )
    finetune(data_config, config, output, resume=resume, force=force, keep_checkpoints=keep_checkpoints)
