"""Settings of a chat model's quantisation: which variants to build, how to score them, which to keep."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.tasks.text_generation.variants import CHAT_VARIANTS, DEFAULT_CHAT_VARIANTS


@dataclass
class ChatQuantizeConfig:
    """Variants of a chat export, scored on held-out conversations and timed side by side with fp32."""

    variants: tuple[str, ...] | None = setting(
        None, aliases=("--variant",),
        help=f"Variants to build, of {', '.join(CHAT_VARIANTS)}; fp32 (the export) is always the reference. "
             f"Default: {','.join(DEFAULT_CHAT_VARIANTS)}; with auto, every variant.")
    auto: bool = setting(False, help="Try every variant (unless variants are given) and keep the fastest within "
                                     "the quality budget.")
    max_quality_drop: float = setting(
        15.0, help="Quality budget: the largest allowed perplexity increase over fp32, in percent, on the held-out "
                   "reference answers (perplexity of int4 / fp32 - 1). A variant over it is never kept.")
    keep: str | None = setting(None, help="Variant to write when not auto (built even if not among the variants; it "
                                          "must be within the budget). Default: the fastest decoder within the "
                                          "budget.")
    score_prompts: int = setting(16, help="Held-out conversations each variant's perplexity and agreement are "
                                          "measured on.")
    timing_prompts: int = setting(4, help="Held-out prompts every variant and fp32 decode in alternating turns.")
    timing_new_tokens: int = setting(32, help="Tokens decoded per timed prompt (decode tokens/s is measured over "
                                              "these).")
    threads: int = setting(1, help="ONNX Runtime intra-op threads while scoring and timing; 1 is what a phone "
                                   "app usually gets.")
    validation: str | None = setting(
        None, help="Held-out conversations to score on (the training data format). Default: the validation split "
                   "the model was fine-tuned with.")
    fidelity_prompts: int = setting(
        0, help="Also score intent fidelity: greedy answers of every variant to this many of the scored prompts, "
                "read by the evaluation's intent judge (trained once per dataset, cached). 0 skips it.")
    fidelity_new_tokens: int = setting(64, help="Tokens of each answer the fidelity judge reads.")
    max_fidelity_drop: float | None = setting(
        None, help="With fidelity_prompts: a variant whose intent fidelity is more than this many points below "
                   "fp32's is never kept. Default: fidelity is reported, not enforced.")

    def __post_init__(self) -> None:
        if self.variants is None:
            self.variants = tuple(CHAT_VARIANTS) if self.auto else DEFAULT_CHAT_VARIANTS
        self.variants = tuple(dict.fromkeys(name for name in self.variants if name != "fp32"))
        unknown = [name for name in self.variants if name not in CHAT_VARIANTS]
        if unknown:
            raise ConfigError(f"variants: unknown variant {unknown[0]!r}; known: {', '.join(CHAT_VARIANTS)}")
        if not self.variants:
            raise ConfigError("variants: name at least one variant besides fp32")
        if self.fidelity_prompts < 0 or self.fidelity_new_tokens < 1:
            raise ConfigError(f"fidelity_prompts: {self.fidelity_prompts} must be >= 0 and fidelity_new_tokens: "
                              f"{self.fidelity_new_tokens} >= 1")
        if self.fidelity_prompts > self.score_prompts:
            raise ConfigError(f"fidelity_prompts: {self.fidelity_prompts} is more than the {self.score_prompts} "
                              "score_prompts it is drawn from; raise score_prompts or lower it")
        if self.keep is not None:
            if self.keep not in CHAT_VARIANTS:
                raise ConfigError(f"keep: unknown variant {self.keep!r}; known: {', '.join(CHAT_VARIANTS)}")
            # The variant to keep is always built, so `keep: int4-block128` alone is enough.
            self.variants = tuple(dict.fromkeys((*self.variants, self.keep)))
        if self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop: {self.max_quality_drop} must not be negative")
        for name in ("score_prompts", "timing_prompts", "timing_new_tokens", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
