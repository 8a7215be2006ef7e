"""`distill`: a fine-tuned teacher plus labelled text in, a smaller fine-tuned student directory out.

Fine-tuning's training loop (`edgetune.finetune.train.train_classifier`: data checks, resume,
best-checkpoint selection, metrics, atomic output, manifest) with three differences supplied as
hooks: the teacher's cached logits ride along each training batch by row index, the loss mixes
soft targets with hard labels, and the manifest records the teacher. The teacher and the student
each read the text with their own tokenizer, so their vocabularies need not match. The output is
an ordinary model directory, so `edgetune export`, `quantize` and `bundle` take it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetune.configuration import config_to_dict
from edgetune.data.config import DataConfig
from edgetune.data.load import LabelledData
from edgetune.distill.augment import augmented_texts
from edgetune.distill.config import DistillConfig
from edgetune.distill.loss import IGNORED_LABEL, distillation_trainer_class
from edgetune.distill.teacher_logits import TeacherOutputs, default_cache_dir, teacher_outputs, teacher_record
from edgetune.distill.transfer_text import read_transfer_text
from edgetune.errors import ConfigError
from edgetune.finetune.train import FinetuneResult, TrainingHooks, train_classifier

log = logging.getLogger(__name__)


@dataclass
class DistillResult(FinetuneResult):
    """A fine-tuning result plus where the teacher's logits came from."""

    teacher_cache_path: Path | None = None
    teacher_logits_from_cache: bool = False
    transfer_rows: int = 0
    augmented_rows: int = 0


def distill(
    data_config: DataConfig,
    config: DistillConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    extra_callbacks: Sequence[object] = (),
) -> DistillResult:
    """Train `config.student` on `data_config` with `config.teacher`'s soft targets; write it to `output_dir`.

    Same keyword arguments as `finetune`: `resume` continues an interrupted run, `force` replaces an
    existing output, `extra_callbacks` are Trainer callbacks.
    """
    transfer_texts = read_transfer_text(config.transfer_text) if config.transfer_text else []
    hooks = DistillationHooks(config, transfer_texts)
    result = train_classifier(data_config, config.student, output_dir, hooks, resume=resume, force=force,
                              keep_checkpoints=keep_checkpoints, extra_callbacks=extra_callbacks)
    outputs = hooks.outputs
    return DistillResult(**vars(result), teacher_cache_path=outputs.cache_path if outputs else None,
                         teacher_logits_from_cache=bool(outputs and outputs.from_cache),
                         transfer_rows=len(hooks.transfer_texts), augmented_rows=len(hooks.augmented))


class DistillationHooks(TrainingHooks):
    """What distillation changes in the fine-tuning loop (see `TrainingHooks`)."""

    stage = "distill"

    def __init__(self, config: DistillConfig, transfer_texts: list[str]) -> None:
        self.config = config
        # Rows without a hard label carry only the teacher's losses; with both weighted 0 (a tune trial drawing
        # alpha 0) training on them would cost time and change nothing but the step count.
        self.unlabelled_rows = config.alpha > 0 or config.hidden_weight > 0
        if not self.unlabelled_rows and (transfer_texts or config.augment_copies):
            log.info("alpha 0 and hidden_weight 0: transfer text and augmented copies carry no loss; left out")
        self.transfer_texts = transfer_texts if self.unlabelled_rows else []
        self.augmented: list[str] = []
        self.teacher_dir = Path(config.teacher).expanduser()
        self.teacher: dict | None = None
        self.data: LabelledData | None = None
        self.outputs: TeacherOutputs | None = None

    def run_record(self) -> dict:
        settings = {key: value for key, value in config_to_dict(self.config).items() if key != "student"}
        return {"distill": settings, "transfer_rows": len(self.transfer_texts)}

    def check(self, data: LabelledData) -> None:
        self.teacher = teacher_record(self.teacher_dir, data.label_names)
        self.data = data

    def prepare_model(self, model):
        if self.config.hidden_weight > 0:
            import torch

            teacher_width = self.teacher["hidden_size"]
            student_width = getattr(model.config, "hidden_size", None)
            if not teacher_width or not student_width:
                raise ConfigError("hidden_weight: the teacher or the student does not report a hidden size, so "
                                  "their representations cannot be matched; set hidden_weight to 0")
            # Registered on the model so checkpoints (and --resume) carry it; removed before the final save.
            model.add_module("distill_projection", torch.nn.Linear(student_width, teacher_width))
        return model

    def training_set(self, data: LabelledData, tokenizer, label_ids: dict[str, int], max_length: int):
        import datasets

        # Only the training split is perturbed: copies of validation texts would leak into model selection.
        self.augmented = augmented_texts(data.train.texts, self.config.augment_copies if self.unlabelled_rows else 0,
                                         self.config.augment_probability, self.config.student.seed)
        unlabelled = self.transfer_texts + self.augmented
        texts = data.train.texts + unlabelled
        cache_dir = Path(self.config.teacher_cache_dir).expanduser() if self.config.teacher_cache_dir \
            else default_cache_dir()
        self.outputs = teacher_outputs(
            self.teacher_dir, self.teacher, texts, data.label_names,
            max_length=self.config.teacher_max_length, batch_size=self.config.teacher_batch_size,
            with_pooled=self.config.hidden_weight > 0, cache_dir=cache_dir,
        )
        _log_teacher_agreement(self.outputs, data, label_ids)
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        columns = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
        hard_labels = [label_ids[label] for label in data.train.labels]
        columns["labels"] = hard_labels + [IGNORED_LABEL] * len(unlabelled)  # the teacher labels these
        columns["teacher_row"] = list(range(len(texts)))
        return datasets.Dataset.from_dict(columns)

    def trainer_class(self):
        return distillation_trainer_class(self.config.temperature, self.config.alpha, self.config.hidden_weight)

    def data_collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return TeacherCollator(DataCollatorWithPadding(tokenizer), self.outputs)

    def model_to_save(self, model):
        if hasattr(model, "distill_projection"):
            del model.distill_projection
        return model

    def manifest_entries(self, training: dict) -> dict:
        return {"distillation": {
            "teacher": {key: self.teacher[key] for key in ("path", "manifest_sha256", "weights_sha256", "metrics")},
            "temperature": self.config.temperature,
            "alpha": self.config.alpha,
            "hidden_weight": self.config.hidden_weight,
            "teacher_max_length": self.config.teacher_max_length,
            "transfer_text": {"path": self.config.transfer_text, "rows": len(self.transfer_texts)}
            if self.config.transfer_text else None,
            "augmentation": {"copies": self.config.augment_copies, "word_probability": self.config.augment_probability,
                             "rows": len(self.augmented)} if self.config.augment_copies else None,
            "teacher_logits_cache": str(self.outputs.cache_path) if self.outputs else None,
            "student_layers_kept": training.get("layers_kept"),
        }}


class TeacherCollator:
    """Pads a batch as fine-tuning does, then adds the teacher's cached outputs for its rows."""

    def __init__(self, pad, outputs: TeacherOutputs) -> None:
        import torch

        self.pad = pad
        self.logits = torch.from_numpy(outputs.logits)
        self.pooled = torch.from_numpy(outputs.pooled) if outputs.pooled is not None else None

    def __call__(self, features: list[dict]) -> dict:
        import torch

        rows = [feature.pop("teacher_row") for feature in features if "teacher_row" in feature]
        batch = self.pad(features)
        if rows:  # training batches; validation batches carry no teacher rows
            index = torch.tensor(rows, dtype=torch.long)
            batch["teacher_logits"] = self.logits[index]
            if self.pooled is not None:
                batch["teacher_pooled"] = self.pooled[index]
        return batch


def _log_teacher_agreement(outputs: TeacherOutputs, data: LabelledData, label_ids: dict[str, int]) -> None:
    import numpy

    labels = numpy.array([label_ids[label] for label in data.train.labels])
    agreement = float((outputs.logits[: len(labels)].argmax(axis=1) == labels).mean())
    log.info("teacher agrees with %.1f%% of the training labels", 100 * agreement)
