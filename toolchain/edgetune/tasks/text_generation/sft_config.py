"""The settings of one supervised fine-tuning (SFT) run of a chat model. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.finetune.config import LoraSettings, check_training_run

DEFAULT_CHAT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class ChatFinetuneConfig:
    """How to fine-tune a causal language model with a chat template on prompt -> response conversations."""

    model: str = setting(DEFAULT_CHAT_MODEL, help="Local causal-LM directory (with a chat template), .gguf file or "
                                                  "hub id (packaged ids resolve offline; see `edgetune models list`).")
    method: Literal["lora", "full"] = setting(
        "lora", help="lora trains low-rank adapters on every attention and MLP linear layer (merged into the weights "
                     "on save); full updates every weight.")
    max_steps: int | None = setting(None, help="Optimiser steps to run; overrides epochs. Default: run epochs.")
    epochs: float = setting(1.0, help="Passes over the training data when max_steps is not set (Bitext: 557 steps "
                                      "of batch 8, ~2.5 h on a 2-core CPU).")
    learning_rate: float | None = setting(
        None, aliases=("--lr",),
        help="Peak learning rate after warm-up. Default: 3e-4 for LoRA (measured on SmolLM2), 2e-5 for full "
             "fine-tuning.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = setting(
        "cosine", aliases=("--scheduler",), help="Learning-rate decay after warm-up.")
    warmup_ratio: float = setting(0.03, help="Share of the steps spent ramping the learning rate up from zero.")
    weight_decay: float = setting(0.0, help="AdamW weight decay.")
    batch_size: int = setting(8, help="Conversations per step and per process (8 x 320 tokens fits a laptop's "
                                      "memory with SmolLM2).")
    eval_batch_size: int = setting(8, help="Conversations per forward pass when evaluating.")
    gradient_accumulation_steps: int = setting(
        1, aliases=("--grad-accum",),
        help="Steps whose gradients are summed before an update (effective batch = batch_size x this x processes).")
    max_length: int = setting(320, help="Tokens per conversation after the chat template. Bitext under SmolLM2's "
                                        "template: p99 ~300, max 531, so 22 of 4,514 rows are over 320 (pass "
                                        "--on-overflow truncate or drop).")
    # The choices of `edgetune.data.chat.check_lengths`, spelled out: that module reads tables (pandas), too heavy
    # for a config.
    on_overflow: Literal["refuse", "truncate", "drop"] = setting(
        "refuse", help="A conversation over max_length: refuse the data (one line naming the row), truncate the "
                       "end of its answer, or drop it (counted in the log).")
    packing: bool = setting(False, help="Pack several conversations into each max_length sequence (fewer pad "
                                        "tokens, faster epochs; TRL's best-fit packing keeps each one whole).")
    eval_steps: int | None = setting(None, help="Evaluate (and checkpoint) every N optimiser steps. Default: every "
                                                "epoch, and at the end of a max_steps run.")
    early_stopping_patience: int | None = setting(
        None, aliases=("--patience",),
        help="Stop after this many evaluations without a lower validation loss. Default: never stop early.")
    gradient_checkpointing: bool = setting(
        False, help="Recompute activations during the backward pass: less memory for long sequences on a GPU, "
                    "slower steps. Off by default (TRL turns it on): SmolLM2 at 320 tokens fits without it.")
    quant_aware: Literal["off", "int4-block32", "int4-block128"] = setting(
        "off", help="Train for the int4 variant of that name: every forward pass uses the weights rounded exactly as "
                    "the int4 export rounds them, and the saved weights stay on that grid, so int4 loses nothing "
                    "more. On SmolLM2 (already 4-bit at the source) plain int4 cost +25% perplexity. off: plain SFT.")
    score_test: bool = setting(
        True, help="After training, also score the test split's loss and perplexity (Bitext's 452 test conversations: "
                   "3-7 min on a 2-core CPU). Turn it off when an evaluate stage scores the test split anyway.")
    precision: Literal["auto", "fp32", "bf16"] = setting(
        "auto", help="auto: bf16 on CUDA devices that support it (fp16 mixed precision on older ones), fp32 on CPU.")
    seed: int = setting(42, help="Seed for adapter initialisation, dropout and data order.")
    logging_steps: int = setting(10, help="Record training loss (the curves) every N steps.")
    lora: LoraSettings = setting(default_factory=LoraSettings, help="Adapter settings, used when method is lora.")

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            self.learning_rate = 3e-4 if self.method == "lora" else 2e-5
        check_training_run(self)
        for name in ("max_steps", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}: {value} must be greater than zero (leave it out for the default)")
        if self.max_length < 16:
            raise ConfigError(f"max_length: {self.max_length} cannot hold a chat template's headers and an answer; "
                              "use at least 16 (320 fits Bitext)")
