"""`finetune`: a pretrained transformer plus labelled text in, a fine-tuned classifier directory out.

Built on the Hugging Face Trainer, which already does what users expect of a mature trainer:
mixed precision, `accelerate launch` multi-process training, length-grouped batches, exact
resumption (model, optimiser, scheduler, RNG, data position) and best-checkpoint selection.
This module adds validated data, the edgetune output contract (an atomic model directory with
metrics, curves, a data report and a manifest) and the checkpoint lifecycle around it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.configuration import config_to_dict
from edgetune.data.config import DataConfig
from edgetune.data.load import LabelledData, load_labelled_data
from edgetune.data.report import build_data_report, format_data_report
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.exclusive import exclusive_use
from edgetune.finetune.config import FinetuneConfig
from edgetune.models.resolve import ResolvedModel, resolve_model
from edgetune.stage_manifest import write_stage_manifest
from edgetune.tasks import TEXT_CLASSIFICATION, Task, get_task

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"  # in the work directory: what an interrupted run was doing, for --resume


@dataclass
class FinetuneResult:
    """Where the model went and how good it is."""

    output_dir: Path
    metrics: dict
    data_report: dict
    wall_time_s: float
    best_step: int | None


def work_directory_for(output_dir: Path) -> Path:
    """Checkpoints of a run in progress live beside its destination until the run completes."""
    return output_dir.parent / f".{output_dir.name}.work"


class TrainingHooks:
    """The points where a stage built on this training loop changes its inputs, loss and record.

    The defaults are plain fine-tuning; distillation (`edgetune.distill.train`) overrides them, so
    both share one loop: data checks, resume, best-checkpoint selection, metrics and the output contract.
    """

    stage = "finetune"
    task = TEXT_CLASSIFICATION
    """The `edgetune.tasks` task trained: it loads the model, encodes the data and scores it."""

    def run_record(self) -> dict:
        """More settings that `--resume` must find unchanged."""
        return {}

    def check(self, data: LabelledData) -> None:
        """Refuse user mistakes before any weight is loaded."""

    def prepare_model(self, model):
        """The model the trainer optimises (after loading, layer selection and LoRA)."""
        return model

    def training_set(self, data: LabelledData, tokenizer, label_ids: dict[str, int], max_length: int):
        return get_task(self.task).encode_for_training(tokenizer, data.train, label_ids, max_length)

    def trainer_class(self):
        from transformers import Trainer

        return Trainer

    def data_collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def model_to_save(self, model):
        """The model written to the output (training-only parts removed)."""
        return model

    def manifest_entries(self, training: dict) -> dict:
        """Extra top-level entries of the output's manifest (`training` is its training record)."""
        return {}


def finetune(
    data_config: DataConfig,
    config: FinetuneConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    extra_callbacks: Sequence[object] = (),
) -> FinetuneResult:
    """Fine-tune `config.model` on `data_config` and write a model directory to `output_dir`.

    `resume` continues an interrupted run from its last checkpoint; `force` replaces an existing
    output (and discards an interrupted run's checkpoints). `extra_callbacks` are Trainer callbacks.
    """
    return train_classifier(data_config, config, output_dir, TrainingHooks(), resume=resume, force=force,
                            keep_checkpoints=keep_checkpoints, extra_callbacks=extra_callbacks)


def train_classifier(
    data_config: DataConfig,
    config: FinetuneConfig,
    output_dir: str | Path,
    hooks: TrainingHooks,
    *,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    extra_callbacks: Sequence[object] = (),
) -> FinetuneResult:
    """The training loop shared by fine-tuning and distillation; `hooks` says what differs.

    One run at a time per output: a second run into the same `output_dir` would share the first one's
    checkpoints and fail only at the end, so it is refused at once, naming the first run's process.
    """
    output_dir = Path(output_dir)
    is_main_process = int(os.environ.get("RANK", "0")) == 0
    # Under torchrun every rank runs this function for the same output: only the main one holds the lock.
    lock = exclusive_use(output_lock_for(output_dir), str(output_dir), "pass another -o/--output") \
        if is_main_process else contextlib.nullcontext()
    with lock:
        return _train_classifier_locked(data_config, config, output_dir, hooks, resume=resume, force=force,
                                        keep_checkpoints=keep_checkpoints, extra_callbacks=extra_callbacks,
                                        is_main_process=is_main_process)


def output_lock_for(output_dir: Path) -> Path:
    """The lock file of a training output, beside it like its work directory (which a run deletes)."""
    return output_dir.parent / f".{output_dir.name}.lock"


def _train_classifier_locked(
    data_config: DataConfig,
    config: FinetuneConfig,
    output_dir: Path,
    hooks: TrainingHooks,
    *,
    resume: bool,
    force: bool,
    keep_checkpoints: bool,
    extra_callbacks: Sequence[object],
    is_main_process: bool,
) -> FinetuneResult:
    started = time.perf_counter()
    work_dir = work_directory_for(output_dir)
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")

    # Everything a user can get wrong is checked before the first weight is loaded.
    task = get_task(hooks.task)
    data = load_labelled_data(data_config)
    hooks.check(data)
    model_ref = resolve_model(config.model)
    # The task and the label map are part of the run: `--resume` refuses checkpoints of a run that trained
    # another task, or whose ids meant other labels.
    run_record = {"task": task.name, "config": config_to_dict(config), "data": config_to_dict(data_config),
                  "data_fingerprint": data.fingerprint(), "labels": data.label_names, **hooks.run_record()}
    resume_from = prepare_work_directory(work_dir, run_record, resume=resume, force=force,
                                          is_main_process=is_main_process)

    import torch
    import transformers

    from edgetune.finetune.divergence import raise_if_diverged

    transformers.set_seed(config.seed)
    tokenizer = _load_tokenizer(model_ref)
    max_length = effective_max_length(config.max_length, tokenizer)
    data_report = build_data_report(data, _token_counter(tokenizer), max_length)
    if is_main_process:
        log.info("data report\n%s", format_data_report(data_report))

    label_ids = {name: index for index, name in enumerate(data.label_names)}
    model = task.load_for_training(model_ref, data.label_names, tokenizer)
    layers_kept = None
    if config.layers is not None or config.num_layers is not None:
        from edgetune.distill.student import keep_layers

        layers_kept = keep_layers(model, config.layers, config.num_layers)
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.method == "lora":
        from edgetune.finetune.lora import add_lora_adapters

        model = add_lora_adapters(model, config.lora)
    model = hooks.prepare_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if is_main_process:
        log.info("%s fine-tuning of %s (%s): %s of %s parameters trainable", config.method, config.model,
                 model_ref.source, f"{trainable:,}", f"{total:,}")

    train_set = hooks.training_set(data, tokenizer, label_ids, max_length)
    validation_set = task.encode_for_training(tokenizer, data.validation, label_ids, max_length)
    trainer = _build_trainer(config, model, tokenizer, train_set, validation_set, work_dir / "checkpoints",
                             task, data.label_names, extra_callbacks, hooks)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    raise_if_diverged(trainer)  # a NaN loss or weight stopped it: an error, never a saved model

    # The trainer has loaded the best checkpoint (by validation metric); report on it.
    metrics = {"validation": _evaluate(task, trainer, validation_set, data.label_names)}
    if data.test is not None:
        test_set = task.encode_for_training(tokenizer, data.test, label_ids, max_length)
        metrics["test"] = _evaluate(task, trainer, test_set, data.label_names)
    best_step = best_step_of(trainer.state.best_model_checkpoint)
    wall_time_s = time.perf_counter() - started

    if is_main_process:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        training = {"wall_time_s": round(wall_time_s, 1), "best_step": best_step,
                    "steps": trainer.state.global_step, "epochs_run": round(trainer.state.epoch or 0, 3),
                    "device": device, "processes": trainer.args.world_size,
                    "precision": training_precision(config.precision)[0], "trainable_parameters": trainable,
                    "max_length": max_length, "layers_kept": layers_kept}
        _write_output(output_dir, trainer, tokenizer, config, data_config, data, model_ref, metrics,
                      data_report, training, force, hooks)
        if not keep_checkpoints:
            shutil.rmtree(work_dir, ignore_errors=True)
        _log_summary(metrics, output_dir, wall_time_s)
    return FinetuneResult(output_dir, metrics, data_report, wall_time_s, best_step)


def prepare_work_directory(work_dir: Path, run_record: dict, *, resume: bool, force: bool,
                            is_main_process: bool) -> Path | None:
    """Return the checkpoint to resume from, after checking that it belongs to this same run."""
    from edgetune.finetune.checkpoints import last_complete_checkpoint

    checkpoints = work_dir / "checkpoints"
    last = last_complete_checkpoint(checkpoints, remove_partial=is_main_process)
    record_path = work_dir / RUN_RECORD
    if resume:
        if last is None:
            raise EdgetuneError(f"nothing to resume: no checkpoint in {checkpoints}; run without --resume")
        recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
        for key in run_record:
            if recorded.get(key) != run_record[key]:
                changed = _first_difference(recorded.get(key), run_record[key], key)
                raise ConfigError(
                    f"cannot resume: {changed} differs from the interrupted run in {work_dir}; "
                    "use the same settings, or pass --force without --resume to start over"
                )
        log.info("resuming from %s", last)
        return Path(last)
    if last is not None and not force:
        raise EdgetuneError(
            f"an interrupted run left checkpoints in {work_dir}: pass --resume to continue it, "
            "or --force to start over"
        )
    if is_main_process:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record_path, run_record)
    return None


def _first_difference(old: object, new: object, path: str) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}")
    return path


def _load_tokenizer(model_ref: ResolvedModel):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_ref.path, **model_ref.from_pretrained_kwargs())
    if tokenizer.pad_token is None:  # decoder-only models ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def effective_max_length(requested: int, tokenizer) -> int:
    # Tokenizers without a limit report a huge sentinel (int(1e30)); only a real limit caps the request.
    limit = tokenizer.model_max_length
    return min(requested, limit) if limit and limit < 100_000 else requested


def _token_counter(tokenizer):
    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]

    return count


def training_precision(requested: str) -> tuple[str, dict]:
    """The precision actually used and the TrainingArguments flags for it."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        requested = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError("precision: fp16 training needs a CUDA GPU and none is visible; use auto, fp32 or bf16")
    return requested, {"bf16": requested == "bf16", "fp16": requested == "fp16"}


def _build_trainer(config: FinetuneConfig, model, tokenizer, train_set, validation_set, checkpoint_dir: Path,
                   task: Task, label_names: list[str], extra_callbacks: Sequence[object], hooks: TrainingHooks):
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from edgetune.finetune.divergence import StopOnDivergence
    from edgetune.finetune.progress import LiveProgressCallback

    _, precision_flags = training_precision(config.precision)
    strategy = "steps" if config.eval_steps else "epoch"
    use_cpu = not torch.cuda.is_available()
    arguments = TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        label_smoothing_factor=config.label_smoothing,
        lr_scheduler_type=config.lr_scheduler,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps,
        save_total_limit=2,  # the best and the latest: enough to select and to resume
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{config.metric}",
        greater_is_better=config.metric != "loss",
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach StopOnDivergence, not be averaged out of the log
        group_by_length=config.group_by_length,
        seed=config.seed,
        use_cpu=use_cpu,
        # gloo is the one collective backend every CPU build of torch has; only set it when there is
        # more than one process, since naming a backend makes the trainer expect a process group.
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,  # every weight of a classifier takes part in each forward pass
        dataloader_num_workers=0,  # tokenised tensors are in memory; workers would only add start-up time
        dataloader_pin_memory=not use_cpu,
        report_to=[],
        # Extra columns (the teacher's row index in distillation) reach the collator instead of being dropped.
        remove_unused_columns=False,
        **precision_flags,
    )

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return task.training_metrics(logits, prediction.label_ids, label_names)

    callbacks = [LiveProgressCallback(config.metric), StopOnDivergence(), *extra_callbacks]
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = hooks.trainer_class()(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=hooks.data_collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    # Ours shows loss and metric on one bar; the trainer's own print every log dict as a line.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _evaluate(task: Task, trainer, dataset, label_names: list[str]) -> dict:
    prediction = trainer.predict(dataset)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return task.evaluate_predictions(logits, prediction.label_ids, label_names)


def best_step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    suffix = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else None


def _write_output(output_dir: Path, trainer, tokenizer, config: FinetuneConfig, data_config: DataConfig,
                  data: LabelledData, model_ref: ResolvedModel, metrics: dict, data_report: dict, training: dict,
                  force: bool, hooks: TrainingHooks) -> None:
    from edgetune.finetune.curves import write_curves
    from edgetune.finetune.lora import merge_lora_adapters

    with atomic_directory(output_dir, overwrite=force) as staging:
        model = hooks.model_to_save(merge_lora_adapters(trainer.model))
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / "metrics.json", metrics)
        write_json_atomic(staging / "data_report.json", data_report)
        write_curves(trainer.state.log_history, staging, config.metric)
        write_stage_manifest(staging, hooks.stage, hooks.task, {
            "base_model": {"name": model_ref.name, "source": model_ref.source, "path": str(model_ref.path),
                           "weights_sha256": model_ref.weights_sha256},
            # The data config lets later stages (export parity, quantisation calibration and evaluation)
            # rebuild exactly these splits, carved validation included.
            "data": {"fingerprint": data.fingerprint(), "config": portable_data_config(data_config),
                     "splits": {s.name: {"source": s.source, "rows": len(s)} for s in data.splits()}},
            "labels": data.label_names,
            "config": config_to_dict(config),
            "training": training,
            "metrics": {split: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]} for split, m in metrics.items()},
            **hooks.manifest_entries(training),
        })


def portable_data_config(data_config: DataConfig) -> dict:
    """The data config with local paths made absolute, so later stages find the files from any directory."""
    recorded = config_to_dict(data_config)
    for key in ("train", "validation", "test"):
        if recorded[key] and Path(recorded[key]).exists():
            recorded[key] = str(Path(recorded[key]).resolve())
    return recorded


def _log_summary(metrics: dict, output_dir: Path, wall_time_s: float) -> None:
    parts = [f"{split} accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.4f}" for split, m in metrics.items()]
    log.info("%s; %.0f s; model written to %s", "; ".join(parts), wall_time_s, output_dir)
