"""The settings of one distillation run. Imports nothing heavy, so validation is instant."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.finetune.config import FinetuneConfig


@dataclass
class DistillConfig:
    """How to train a small student on a fine-tuned teacher's soft targets (and the hard labels)."""

    teacher: str = setting(
        help="Fine-tuned teacher: an `edgetune finetune` output directory (in a recipe, or an earlier stage's "
             "name) trained on the same labels.")
    student: FinetuneConfig = setting(
        default_factory=FinetuneConfig, nested_aliases={"model": ("--student",)},
        help="The student and how it trains: student.model is the pretrained student (its own tokenizer is "
             "used), student.layers / student.num_layers cut it down DistilBERT-style; epochs, learning rate, "
             "seed etc. as in finetune.")
    temperature: float = setting(
        2.0, help="Softmax temperature T of the soft targets: higher spreads the teacher's probability over the "
                  "classes it finds similar, which is the knowledge a one-hot label lacks.")
    alpha: float = setting(0.5, help="Weight of the soft-target loss, KL(T) x T^2; the hard-label cross-entropy "
                                     "gets 1 - alpha.")
    transfer_text: str | None = setting(
        None, help="Extra unlabelled text (a .txt file, one text per line, or a CSV/TSV/JSONL/Parquet file with a "
                   "text column) that the teacher labels; it adds soft-target rows to training.")
    augment_copies: int = setting(
        0, help="Perturbed copies of each training text for the teacher to label (words dropped or replaced with "
                "probability augment_probability, some copies cut to a span; Tang et al. 2019). Each copy adds a "
                "soft-target row, so 1 copy about doubles the training time. 0 turns it off.")
    augment_probability: float = setting(
        0.1, help="Chance that each word of a copy is dropped, and again that it is replaced by a corpus word.")
    hidden_weight: float = setting(
        0.0, help="Weight of a representation loss: 1 - cosine between the student's mean-pooled last hidden "
                  "state, through a learned projection to the teacher's width, and the teacher's. 0 turns it off.")
    teacher_max_length: int = setting(128, help="Tokens the teacher reads per text (with its own tokenizer).")
    teacher_batch_size: int = setting(64, help="Texts per teacher forward pass when computing its logits (once; "
                                               "then cached).")
    teacher_cache_dir: str | None = setting(
        None, help="Where teacher logits are cached. Default: $EDGETUNE_CACHE/teacher-logits "
                   "(~/.cache/edgetune/...).")

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ConfigError("teacher: required; pass the directory of a fine-tuned teacher model")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: {self.temperature} must be greater than zero (typical: 1 to 8)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: {self.alpha} must be in [0, 1] (1 = soft targets only, 0 = hard labels only)")
        if self.augment_copies < 0:
            raise ConfigError(f"augment_copies: {self.augment_copies} must not be negative (0 turns it off)")
        if not 0.0 < self.augment_probability < 0.5:
            raise ConfigError(f"augment_probability: {self.augment_probability} must be in (0, 0.5); "
                              "typical: 0.1")
        if self.hidden_weight < 0:
            raise ConfigError(f"hidden_weight: {self.hidden_weight} must not be negative")
        if self.hidden_weight > 0 and self.student.method == "lora":
            raise ConfigError("hidden_weight: the representation loss needs full fine-tuning of the student; "
                              "use method full or set hidden_weight to 0")
        if self.teacher_max_length <= 0 or self.teacher_batch_size <= 0:
            raise ConfigError("teacher_max_length and teacher_batch_size must be greater than zero")
