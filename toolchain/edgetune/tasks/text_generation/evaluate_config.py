"""Settings of `edgetune evaluate --task chat`: which held-out prompts, how long the answers, which judge.

Imports nothing heavy, so the command's flags and a recipe's validation are instant.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.finetune.config import DEFAULT_MODEL


@dataclass
class ChatEvaluateConfig:
    """Compare chat models side by side on the same held-out prompts."""

    conversations: str | None = setting(
        None, help="Held-out conversations to score (CSV/TSV/JSONL/Parquet, prompt/response columns or `messages`). "
                   "Default: the test split recorded by the fine-tuned model among the inputs.")
    per_intent: int | None = setting(
        2, help="Prompts drawn per intent (seeded), so every intent is scored alike; 0 or absent in a recipe "
                "(null) takes every prompt.")
    limit: int | None = setting(None, help="At most this many prompts in all, drawn round-robin over intents.")
    seed: int = setting(0, help="Seed of the prompt sample, so every model and every run scores the same prompts.")
    max_new_tokens: int = setting(128, help="Longest greedy answer, in tokens (Bitext answers: p50 150, p90 198).")
    judge: bool = setting(True, help="Train (once per dataset; cached) an intent classifier on the training "
                                     "responses and report the share of answers it judges to be on the prompt's "
                                     "intent.")
    judge_data: str | None = setting(
        None, help="Chat data whose training responses and intents train the judge. Default: the data the "
                   "fine-tuned model recorded.")
    judge_model: str = setting(DEFAULT_MODEL, help="Encoder the judge is fine-tuned from (edgetune's own "
                                                   "classification path).")
    judge_epochs: float = setting(2.0, help="Passes of the judge's training over its responses; a short run "
                                            "suffices (responses say their intent plainly).")
    judge_max_length: int = setting(
        64, help="Tokens of an answer the judge reads: its opening sentences name the topic (measured on Bitext: "
                 "64 tokens, 40 answers per intent, 2 epochs -> 92.6% accuracy on held-out references).")
    judge_per_intent: int | None = setting(
        40, help="Training responses per intent the judge learns from (seeded); 0 takes all. Keeps the one-off "
                 "judge training short (62 steps for Bitext's 27 intents).")
    threads: int = setting(0, help="ONNX Runtime intra-op threads for ONNX chat models (0: its default).")

    def __post_init__(self) -> None:
        # 0 means "no cap" on the command line and in a recipe alike; None is the one stored form.
        if self.per_intent == 0:
            self.per_intent = None
        if self.judge_per_intent == 0:
            self.judge_per_intent = None
        for name in ("per_intent", "limit", "judge_per_intent"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: {value} must be at least 1 (or absent for no cap)")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: {self.max_new_tokens} must be at least 1; 128 is typical")
        if self.judge_epochs <= 0:
            raise ConfigError(f"judge_epochs: {self.judge_epochs} must be greater than zero; 1 or 2 suffices")
        if not 8 <= self.judge_max_length <= 512:
            raise ConfigError(f"judge_max_length: {self.judge_max_length} is outside [8, 512]; 128 is typical")
        if self.threads < 0:
            raise ConfigError(f"threads: {self.threads} must not be negative (0: ONNX Runtime's default)")
