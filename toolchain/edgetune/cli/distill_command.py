"""`edgetune distill`: the Click layer over `edgetune.distill.train.distill`."""

from __future__ import annotations

import click

from edgetune.cli.data_options import data_config_from, data_options
from edgetune.cli.finetune_command import finetune_config_from, training_options
from edgetune.distill.config import DistillConfig
from edgetune.finetune.config import DEFAULT_MODEL

_DEFAULTS = DistillConfig(teacher="-")


@click.command("distill")
@data_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the distilled student to (created atomically at the end).")
@click.option("--teacher", required=True, type=click.Path(),
              help="Fine-tuned teacher: an `edgetune finetune` output trained on the same labels.")
@click.option("--student", default=DEFAULT_MODEL, show_default=True,
              help="Pretrained student: local model directory or hub id (its own tokenizer is used).")
@click.option("--student-layers", default=None,
              help="Keep only these student layers, e.g. 0,2,4, initialised from them (DistilBERT-style).")
@click.option("--student-num-layers", type=int, default=None,
              help="Keep this many evenly spaced student layers (3 of 6 keeps 0,2,4): lower latency.")
@click.option("--temperature", type=float, default=_DEFAULTS.temperature, show_default=True,
              help="Softmax temperature of the soft targets.")
@click.option("--alpha", type=float, default=_DEFAULTS.alpha, show_default=True,
              help="Weight of the soft-target loss; the hard-label loss gets 1 - alpha.")
@click.option("--transfer-text", default=None, type=click.Path(),
              help="Extra unlabelled text (.txt one per line, or a table with a text column) the teacher labels.")
@click.option("--augment-copies", type=int, default=_DEFAULTS.augment_copies, show_default=True,
              help="Perturbed copies of each training text for the teacher to label (words dropped or "
                   "replaced); 1 about doubles training time and usually narrows the gap to the teacher.")
@click.option("--augment-probability", type=float, default=_DEFAULTS.augment_probability, show_default=True,
              help="Chance each word of a copy is dropped, and again that it is replaced.")
@click.option("--hidden-weight", type=float, default=_DEFAULTS.hidden_weight, show_default=True,
              help="Weight of a sentence-representation loss through a learned projection; 0 disables.")
@click.option("--teacher-max-length", type=int, default=_DEFAULTS.teacher_max_length, show_default=True,
              help="Tokens the teacher reads per text.")
@click.option("--teacher-batch-size", type=int, default=_DEFAULTS.teacher_batch_size, show_default=True)
@click.option("--teacher-cache-dir", default=None, type=click.Path(file_okay=False),
              help="Where teacher logits are cached. Default: ~/.cache/edgetune/teacher-logits.")
@training_options
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing output and discard an interrupted run.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep the intermediate checkpoints after success.")
def distill_command(output: str, teacher: str, student: str, student_layers: str | None,
                    student_num_layers: int | None, resume: bool, force: bool, keep_checkpoints: bool,
                    **options) -> None:
    """Distil a fine-tuned teacher into a smaller student.

    The student learns from the teacher's softened predictions (temperature T) mixed with the hard
    labels (alpha), each model reading the text with its own tokenizer. The teacher's logits are
    computed once and cached. Writes the same model directory as `edgetune finetune`, so export,
    quantize and bundle take it unchanged; its manifest records the teacher, T, alpha and the layers kept.
    Runs unchanged under `accelerate launch -m edgetune distill ...`.
    """
    from edgetune.distill.train import distill

    data_config = data_config_from(options)
    settings = {name: options.pop(name) for name in ("temperature", "alpha", "transfer_text", "augment_copies",
                                                      "augment_probability", "hidden_weight",
                                                      "teacher_max_length", "teacher_batch_size",
                                                      "teacher_cache_dir")}
    student_config = finetune_config_from(options, model=student, layers=student_layers,
                                          num_layers=student_num_layers)
    config = DistillConfig(teacher=teacher, student=student_config, **settings)
    distill(data_config, config, output, resume=resume, force=force, keep_checkpoints=keep_checkpoints)
