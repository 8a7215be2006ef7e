"""`finetune --task chat`: a causal LM with a chat template plus conversations in, a fine-tuned chat model out.

TRL's `SFTTrainer` on prompt/completion conversations does the training: it renders each one with the
model's chat template and puts the loss on the answer only (completion-only loss), so the prompt and
the assistant header teach nothing. Around it, the classifier's machinery is reused as is: one run per
output (lock), checkpoints in a work directory beside the output, `--resume` checks, divergence
refused, the best checkpoint (lowest validation loss) kept, an atomic output with an `edgetune.json`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.configuration import config_to_dict
from edgetune.data.chat import ChatExample, ChatSplit, check_lengths, load_chat_data
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import EdgetuneError
from edgetune.exclusive import exclusive_use
from edgetune.finetune.train import (
    best_step_of,
    effective_max_length,
    output_lock_for,
    portable_data_config,
    prepare_work_directory,
    training_precision,
    work_directory_for,
)
from edgetune.models.gguf_dir import resolve_model_directory
from edgetune.models.resolve import ResolvedModel
from edgetune.stage_manifest import write_stage_manifest
from edgetune.tasks.text_generation import TEXT_GENERATION
from edgetune.tasks.text_generation.sft_config import ChatFinetuneConfig
from edgetune.tasks.text_generation.template_lengths import template_lengths

log = logging.getLogger(__name__)


@dataclass
class ChatFinetuneResult:
    """Where the chat model went and how well it predicts held-out answers."""

    output_dir: Path
    metrics: dict
    wall_time_s: float
    best_step: int | None


def finetune_chat(
    data: ChatDataConfig,
    config: ChatFinetuneConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    extra_callbacks: Sequence[object] = (),
) -> ChatFinetuneResult:
    """Fine-tune `config.model` on the conversations of `data` and write a chat model directory to `output_dir`.

    `resume` continues an interrupted run from its last checkpoint; `force` replaces an existing output
    (and discards an interrupted run's checkpoints). `extra_callbacks` are Trainer callbacks.
    """
    output_dir = Path(output_dir)
    is_main_process = int(os.environ.get("RANK", "0")) == 0
    # As for classification: under torchrun every rank runs this, and only the main one holds the output lock.
    lock = exclusive_use(output_lock_for(output_dir), str(output_dir), "pass another -o/--output") \
        if is_main_process else contextlib.nullcontext()
    with lock:
        return _finetune_chat_locked(data, config, output_dir, resume=resume, force=force,
                                     keep_checkpoints=keep_checkpoints, extra_callbacks=extra_callbacks,
                                     is_main_process=is_main_process)


def _finetune_chat_locked(data_config: ChatDataConfig, config: ChatFinetuneConfig, output_dir: Path, *,
                          resume: bool, force: bool, keep_checkpoints: bool, extra_callbacks: Sequence[object],
                          is_main_process: bool) -> ChatFinetuneResult:
    started = time.perf_counter()
    work_dir = work_directory_for(output_dir)
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")

    # Everything a user can get wrong is checked before the first weight is loaded.
    chat = load_chat_data(data_config)
    for note in chat.notes:
        log.info("data: %s", note)
    model_ref = resolve_model_directory(config.model)
    tokenizer = load_chat_tokenizer(model_ref)
    max_length = effective_max_length(config.max_length, tokenizer)
    splits = {name: _fit_lengths(split, tokenizer, max_length, config.on_overflow)
              for name, split in (("train", chat.train), ("validation", chat.validation), ("test", chat.test))
              if split is not None}
    run_record = {"task": TEXT_GENERATION, "config": config_to_dict(config), "data": config_to_dict(data_config),
                  "data_fingerprint": chat.fingerprint()}
    resume_from = prepare_work_directory(work_dir, run_record, resume=resume, force=force,
                                         is_main_process=is_main_process)

    import torch
    import transformers

    from edgetune.finetune.divergence import raise_if_diverged
    from edgetune.tasks.text_generation.perplexity import loss_metrics

    transformers.set_seed(config.seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_ref.path, dtype=torch.float32)
    if config.method == "lora":
        from edgetune.finetune.lora import add_lora_adapters

        model = add_lora_adapters(model, config.lora, task_type="CAUSAL_LM")
    if config.quant_aware != "off":
        from edgetune.tasks.text_generation.quant_aware import train_for_int4

        rounded = train_for_int4(model, config.quant_aware)
        log.info("quantisation-aware: %d layers compute with %s-rounded weights", rounded, config.quant_aware)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if is_main_process:
        log.info("%s fine-tuning of %s (%s): %s of %s parameters trainable; %s", config.method, config.model,
                 model_ref.source, f"{trainable:,}", f"{total:,}",
                 ", ".join(f"{name} {len(examples)}" for name, examples in splits.items()))

    trainer = build_sft_trainer(config, model, tokenizer, splits["train"], splits["validation"], max_length,
                                work_dir / "checkpoints", extra_callbacks)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    raise_if_diverged(trainer)  # a NaN loss or weight stopped it: an error, never a saved model

    # The trainer has loaded the best checkpoint (lowest validation loss); report on it. Its validation figures
    # were logged when it was evaluated, so validation (406 Bitext conversations: minutes on a CPU) is not rerun.
    best_step = best_step_of(trainer.state.best_model_checkpoint)
    best_evaluation = next((entry for entry in trainer.state.log_history
                            if entry.get("step") == best_step and "eval_loss" in entry), None)
    metrics = {"validation": loss_metrics(best_evaluation or trainer.evaluate())}
    if "test" in splits and config.score_test:
        # Its own prefix, so the training curves' eval_loss stays the validation loss.
        metrics["test"] = loss_metrics(trainer.evaluate(_sft_dataset(splits["test"]), metric_key_prefix="test"),
                                       "test")
    wall_time_s = time.perf_counter() - started

    if is_main_process:
        training = {"wall_time_s": round(wall_time_s, 1), "best_step": best_step,
                    "steps": trainer.state.global_step, "epochs_run": round(trainer.state.epoch or 0, 3),
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "processes": trainer.args.world_size,
                    "precision": training_precision(config.precision)[0], "trainable_parameters": trainable,
                    "max_length": max_length, "packing": config.packing,
                    "examples": {name: len(examples) for name, examples in splits.items()}}
        _write_output(output_dir, trainer, tokenizer, config, data_config, chat, model_ref, metrics, training,
                      max_length, force)
        if not keep_checkpoints:
            shutil.rmtree(work_dir, ignore_errors=True)
        log.info("%s; %.0f s; chat model written to %s", "; ".join(
            f"{split} loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}" for split, m in metrics.items()),
            wall_time_s, output_dir)
    return ChatFinetuneResult(output_dir, metrics, wall_time_s, best_step)


def load_chat_tokenizer(model_ref: ResolvedModel):
    """The model's tokenizer; one line when it has no chat template (there is no format to train on)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_ref.path)
    if not tokenizer.chat_template:
        raise EdgetuneError(f"{model_ref.path}: the tokenizer has no chat template, so conversations cannot be "
                            "rendered; use an instruct/chat model, or add `chat_template` to its tokenizer_config.json")
    if tokenizer.pad_token is None:  # padding is masked out of the loss; the end-of-turn token is a safe filler
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _fit_lengths(split: ChatSplit, tokenizer, max_length: int, on_overflow: str) -> list[ChatExample]:
    """The split's conversations after refusing, truncating or dropping those over `max_length` tokens."""
    lengths = template_lengths(tokenizer, split.examples)
    checked = check_lengths(split.examples, lengths.total, max_length, on_overflow, lengths.prompt)
    if checked.over:
        action = "truncated the answers of" if checked.truncated else "dropped"
        log.warning("%s: %s %d of %d conversations longer than max_length %d tokens", split.name, action,
                    checked.over, len(split), max_length)
    if not checked.examples:
        raise EdgetuneError(f"{split.source}: no {split.name} conversation fits max_length {max_length}; raise "
                            "max_length")
    return checked.examples


def _sft_dataset(examples: Sequence[ChatExample]):
    """TRL's conversational prompt/completion rows: the loss falls on the completion (the final answer) only."""
    import datasets

    datasets.disable_progress_bars()  # four bars per split per run would bury the training bar and the log
    return datasets.Dataset.from_list([{"prompt": list(example.messages[:-1]), "completion": [example.messages[-1]]}
                              for example in examples])


def build_sft_trainer(config: ChatFinetuneConfig, model, tokenizer, train_examples: Sequence[ChatExample],
                      validation_examples: Sequence[ChatExample], max_length: int, checkpoint_dir: Path,
                      extra_callbacks: Sequence[object] = ()):
    """The `SFTTrainer` of a run (its collated batches are what tests inspect for the loss mask)."""
    import torch
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    from edgetune.finetune.divergence import StopOnDivergence
    from edgetune.finetune.progress import LiveProgressCallback
    from edgetune.tasks.text_generation.perplexity import ValidationPerplexityLog

    _, precision_flags = training_precision(config.precision)
    strategy = "steps" if config.eval_steps else "epoch"
    use_cpu = not torch.cuda.is_available()
    arguments = SFTConfig(
        output_dir=str(checkpoint_dir),
        max_length=max_length,
        completion_only_loss=True,  # TRL's default for prompt/completion data, pinned: it is the point of SFT here
        packing=config.packing,
        gradient_checkpointing=config.gradient_checkpointing,
        eval_packing=False,  # validation loss per whole conversation, comparable with and without packing
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps,
        save_total_limit=2,  # the best and the latest: enough to select and to resume
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach StopOnDivergence, not be averaged out of the log
        seed=config.seed,
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_num_workers=0,
        dataloader_pin_memory=not use_cpu,
        report_to=[],
        **precision_flags,
    )
    callbacks = [LiveProgressCallback("loss"), StopOnDivergence(), ValidationPerplexityLog(), *extra_callbacks]
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=_sft_dataset(train_examples),
        eval_dataset=_sft_dataset(validation_examples),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # Ours shows loss and validation loss on one bar; the trainer's own print every log dict as a line.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _write_output(output_dir: Path, trainer, tokenizer, config: ChatFinetuneConfig, data_config: ChatDataConfig,
                  chat, model_ref: ResolvedModel, metrics: dict, training: dict, max_length: int,
                  force: bool) -> None:
    from edgetune.finetune.curves import write_curves
    from edgetune.finetune.lora import merge_lora_adapters

    with atomic_directory(output_dir, overwrite=force) as staging:
        model = merge_lora_adapters(trainer.model)
        if config.quant_aware != "off":  # the weights the run trained are the rounded ones: save those
            from edgetune.tasks.text_generation.quant_aware import round_weights_to_int4

            round_weights_to_int4(model, config.quant_aware)
        # Generation stops at the end-of-turn token the chat template closes each answer with.
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(staging, safe_serialization=True)
        # The chat template inside tokenizer_config.json, where the export stage and bundles read it.
        tokenizer.save_pretrained(staging, save_jinja_files=False)
        write_json_atomic(staging / "metrics.json", metrics)
        write_curves(trainer.state.log_history, staging, "loss")
        write_stage_manifest(staging, "finetune", TEXT_GENERATION, {
            "base_model": {"name": model_ref.name, "source": model_ref.source, "path": str(model_ref.path),
                           "weights_sha256": model_ref.weights_sha256},
            # Later stages (export parity, quantisation scoring, evaluation) rebuild exactly these splits from it.
            "data": {"fingerprint": chat.fingerprint(), "config": portable_data_config(data_config),
                     "splits": {split.name: {"source": split.source, "rows": len(split)}
                                for split in (chat.train, chat.validation, chat.test) if split is not None}},
            "system_prompt": data_config.system_prompt,
            "max_length": max_length,
            "config": config_to_dict(config),
            "training": training,
            "metrics": metrics,
        })
