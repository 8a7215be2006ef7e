"""The settings of one fine-tuning run. Imports nothing heavy, so validation is instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.configuration import setting
from edgetune.errors import ConfigError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class LoraSettings:
    """Low-rank adapters (peft); merged into the weights on save so export sees a plain model."""

    r: int = setting(16, help="Adapter rank: 8-16 is typical for classification; higher trains more parameters.")
    alpha: int = setting(32, help="Scaling numerator; the update is scaled by alpha / r (2.0 with the defaults).")
    dropout: float = setting(0.05, help="Dropout on the adapter input.")
    target_modules: tuple[str, ...] | None = setting(
        None, help="Linear layers to adapt, e.g. query,value. Default: every attention and MLP linear layer of "
                   "the architecture (see finetune/lora.py).")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"r: {self.r} must be at least 1")
        if self.alpha < 1:
            raise ConfigError(f"alpha: {self.alpha} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: {self.dropout} must be in [0, 1)")


def check_training_run(config) -> None:
    """The checks every trainer config shares (classification's and chat SFT's): positive sizes and rates, a
    warm-up share in [0, 1), no negative weight decay, and early-stopping patience 0 stored as None (never stop)."""
    positive = {
        "epochs": config.epochs, "learning_rate": config.learning_rate, "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size, "max_length": config.max_length,
        "gradient_accumulation_steps": config.gradient_accumulation_steps, "logging_steps": config.logging_steps,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name}: {value} must be greater than zero")
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise ConfigError(f"warmup_ratio: {config.warmup_ratio} must be in [0, 1)")
    if config.weight_decay < 0:
        raise ConfigError(f"weight_decay: {config.weight_decay} must not be negative")
    if config.early_stopping_patience == 0:
        # 0 means "never stop early" on the command line and in a recipe alike; None is the one stored form.
        config.early_stopping_patience = None
    if config.early_stopping_patience is not None and config.early_stopping_patience < 0:
        raise ConfigError(f"early_stopping_patience: {config.early_stopping_patience} must not be negative "
                          "(0 turns early stopping off)")


@dataclass
class FinetuneConfig:
    """How to fine-tune a pretrained transformer into a text classifier."""

    model: str = setting(DEFAULT_MODEL, help="Local model directory or hub id (packaged ids resolve offline; "
                                             "see `edgetune models list`).")
    method: Literal["full", "lora"] = setting(
        "full", help="full updates every weight; lora trains low-rank adapters and the classifier head only "
                     "(merged into the weights on save).")
    epochs: float = setting(8.0, help="Passes over the training data (the best epoch on validation is kept).")
    learning_rate: float | None = setting(
        None, aliases=("--lr",),
        help="Peak learning rate after warm-up. Default: 3e-4 for full fine-tuning (measured best for small "
             "encoders such as MiniLM; use 2e-5..5e-5 for base-size models), 1e-3 for LoRA.")
    batch_size: int = setting(32, help="Training examples per step and per process.")
    eval_batch_size: int = setting(128, help="Examples per forward pass when evaluating; no gradients, so it can "
                                             "be large.")
    gradient_accumulation_steps: int = setting(
        1, aliases=("--grad-accum",),
        help="Steps whose gradients are summed before an update (effective batch = batch_size x this x processes).")
    max_length: int = setting(128, help="Tokens kept per text; longer texts are truncated (the data report counts "
                                        "them).")
    warmup_ratio: float = setting(0.1, help="Share of the steps spent ramping the learning rate up from zero.")
    weight_decay: float = setting(0.01, help="AdamW weight decay.")
    label_smoothing: float = setting(0.1, help="Share of each target's probability spread over the other classes "
                                               "(0.1 helps many-class intents).")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = setting(
        "linear", aliases=("--scheduler",), help="Learning-rate decay after warm-up.")
    eval_steps: int | None = setting(None, help="Evaluate (and checkpoint) every N optimiser steps. Default: every "
                                                "epoch.")
    metric: Literal["accuracy", "macro_f1", "loss"] = setting(
        "accuracy", help="Validation metric that picks the best checkpoint and drives early stopping.")
    early_stopping_patience: int | None = setting(
        3, aliases=("--patience",),
        help="Stop after this many evaluations without improvement; 0 (or absent in a recipe: null) never stops "
             "early.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", help="auto: bf16 on CUDA devices that support it, else fp16 on CUDA, fp32 on CPU.")
    freeze_embeddings: bool = setting(
        False, help="Keep the word-embedding matrix fixed: ~30% faster steps on CPU for small encoders, where that "
                    "matrix holds half the weights but barely changes during fine-tuning.")
    group_by_length: bool = setting(True, help="Batch texts of similar length together so dynamic padding wastes "
                                               "little compute.")
    seed: int = setting(42, help="Seed for weights of the new head, dropout and data order.")
    logging_steps: int = setting(25, help="Record training loss (the curves) every N steps.")
    lora: LoraSettings = setting(default_factory=LoraSettings, help="Adapter settings, used when method is lora.")
    layers: tuple[int, ...] | None = setting(
        None, help="Keep only these encoder layers (0-based, e.g. 0,2,4), initialised from the model's own weights "
                   "(DistilBERT-style): a shallower, faster model. Default: all layers.")
    num_layers: int | None = setting(
        None, help="Keep this many evenly spaced encoder layers (3 of 6 keeps 0,2,4); exclusive with layers.")

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            self.learning_rate = 1e-3 if self.method == "lora" else 3e-4
        check_training_run(self)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing: {self.label_smoothing} must be in [0, 1)")
        if self.eval_steps is not None and self.eval_steps <= 0:
            raise ConfigError(f"eval_steps: {self.eval_steps} must be greater than zero")
        if self.layers is not None and self.num_layers is not None:
            raise ConfigError("layers and num_layers both given: pass one of them (explicit layers, or a count)")
        if self.layers is not None:
            if not self.layers or any(index < 0 for index in self.layers):
                raise ConfigError(f"layers: {list(self.layers)} must be non-empty layer indices counted from 0")
            if len(set(self.layers)) != len(self.layers):
                raise ConfigError(f"layers: {list(self.layers)} names a layer twice")
            self.layers = tuple(sorted(self.layers))
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"num_layers: {self.num_layers} must be at least 1")
        if self.max_length > 8192:
            raise ConfigError(f"max_length: {self.max_length} is larger than any supported encoder (8192)")
