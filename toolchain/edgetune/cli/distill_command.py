"""`edgetune distill`: the Click layer over `edgetune.distill.train.distill`."""

from __future__ import annotations

import click

from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.data_options import DATA_OPTIONS
from edgetune.cli.finetune_command import training_run_options
from edgetune.distill.config import DistillConfig

# The student's settings are `--student-epochs` etc., after their recipe keys; the finetune names
# (`--epochs`, `--lr`, ...) set them too, as they always have.
DISTILL_OPTIONS = ConfigOptions(DistillConfig, unprefixed=("student",))


@click.command("distill")
@DATA_OPTIONS
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the distilled student to (created atomically at the end).")
@DISTILL_OPTIONS
@training_run_options
def distill_command(output: str, resume: bool, force: bool, keep_checkpoints: bool, **options) -> None:
    """Distil a fine-tuned teacher into a smaller student.

    The student learns from the teacher's softened predictions (temperature T) mixed with the hard
    labels (alpha), each model reading the text with its own tokenizer. The teacher's logits are
    computed once and cached. Writes the same model directory as `edgetune finetune`, so export,
    quantize and bundle take it unchanged; its manifest records the teacher, T, alpha and the layers kept.
    Runs unchanged under `accelerate launch -m edgetune distill ...`.
    """
    from edgetune.distill.train import distill

    data_config = DATA_OPTIONS.build(options)
    config = DISTILL_OPTIONS.build(options)
    distill(data_config, config, output, resume=resume, force=force, keep_checkpoints=keep_checkpoints)
