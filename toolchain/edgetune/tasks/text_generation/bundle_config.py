"""Settings of `edgetune bundle` for a chat model (`--task chat`): generation defaults and golden prompts."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.bundle.config import BundleConfig
from edgetune.configuration import setting
from edgetune.errors import ConfigError


@dataclass
class GenerationBundleConfig(BundleConfig):
    """What goes into a chat bundle besides the model: generation defaults and golden prompts."""

    validation: str | None = setting(
        None, help="Conversations the golden prompts are drawn from (prompt/response columns or JSONL messages). "
                   "Default: the validation split the model was fine-tuned with.")
    text_column: str | None = setting(None, help="Column of validation holding the prompt; detected from common "
                                                 "names when absent.")
    label_column: str | None = setting(None, help="Column of validation holding the intent golden prompts are "
                                                  "spread over; intent or category when absent.")

    golden_examples: int = setting(
        4, help="Held-out prompts shipped with the greedy tokens the model answers them with, so a device can "
                "verify the bundle (each costs a short generation at build and verify time).")
    golden_prefix_tokens: int = setting(
        8, help="How many greedy tokens of each golden prompt a device must reproduce exactly (twice as many are "
                "recorded, to show where a device drifts); quantised kernels may flip a near-tie later on.")
    max_new_tokens: int = setting(256, help="The bundle's default answer length in tokens (a call may ask for more).")
    context_length: int | None = setting(
        None, help="Prompt plus answer tokens the bundle allows; it sizes the KV cache. Default: the ONNX "
                   "artifact's context (genai_config.json's model.context_length); at most that.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ort_format:
            raise ConfigError("ort_format: not supported for chat bundles yet (the decoder keeps its weights in "
                              "model.onnx.data, which the ORT converter does not carry over); leave it off")
        if self.tokenizer_in_graph:
            raise ConfigError("tokenizer_in_graph: classifiers only (a chat bundle's tokenizer runs in "
                              "onnxruntime-genai); leave it off")
        if not 1 <= self.golden_prefix_tokens <= 4096:
            raise ConfigError(f"golden_prefix_tokens: {self.golden_prefix_tokens} must be from 1 to 4096")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: {self.max_new_tokens} must be at least 1")
        if self.context_length is not None and self.context_length <= self.max_new_tokens:
            raise ConfigError(f"context_length: {self.context_length} leaves no room for a prompt with max_new_tokens "
                              f"{self.max_new_tokens}; raise it or lower max_new_tokens")
