"""Settings of a chat model's ONNX export (onnxruntime-genai's model builder, KV cache, parity gate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.configuration import setting
from edgetune.errors import ConfigError

INT4_BLOCK_SIZES = (16, 32, 64, 128, 256)
"""Block sizes the builder's MatMulNBits quantiser accepts."""


@dataclass
class ChatExportConfig:
    """How to build a chat model's KV-cache graph and how strictly to check it against PyTorch."""

    precision: Literal["fp32", "int4"] = setting(
        "fp32", help="Weights of the written graph. fp32 is what `edgetune quantize` starts from; int4 is built "
                     "after the fp32 build passed the parity gate. Both are built by onnxruntime-genai's builder.")
    int4_block_size: int = setting(32, help="With int4: weights per quantisation block (16, 32, 64, 128 or 256); "
                                            "smaller blocks keep more quality and a little more size.")
    int4_accuracy_level: int = setting(4, help="With int4: precision of the activations inside the int4 MatMul "
                                               "(1 fp32, 2 fp16, 3 bf16, 4 int8, the fastest on CPUs).")
    context_length: int = setting(
        2048, help="Tokens of prompt and answer the model serves: the KV cache is allocated for this many, so it "
                   "sets memory use (genai_config.json's model.context_length and search.max_length).")
    parity_prompts: int = setting(16, help="Held-out prompts on which the fp32 graph's greedy tokens must equal "
                                           "PyTorch's.")
    parity_new_tokens: int = setting(32, help="Greedy tokens compared per prompt.")
    tie_tolerance: float = setting(
        1e-3, help="Sequences may first differ only where PyTorch's two best logits were closer than this (an "
                   "fp32 rounding can flip such a near-tie); any other difference fails the export.")
    validation: str | None = setting(
        None, help="Held-out conversations for the parity gate (the training data format). Default: the "
                   "validation split the model was fine-tuned with.")

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int4"):
            raise ConfigError(f"precision: {self.precision!r} is not one of fp32, int4")
        if self.int4_block_size not in INT4_BLOCK_SIZES:
            raise ConfigError(f"int4_block_size: {self.int4_block_size} is not one of "
                              f"{', '.join(map(str, INT4_BLOCK_SIZES))}")
        if self.int4_accuracy_level not in (1, 2, 3, 4):
            raise ConfigError(f"int4_accuracy_level: {self.int4_accuracy_level} is not one of 1, 2, 3, 4")
        for name in ("context_length", "parity_prompts", "parity_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.tie_tolerance < 0:
            raise ConfigError(f"tie_tolerance: {self.tie_tolerance} must not be negative")
