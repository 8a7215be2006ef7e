"""Settings of a quantisation run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.quantize.variants import (
    DEFAULT_VARIANTS,
    VARIANTS,
    is_known_variant,
    known_variant_names,
    resolve_variant,
)


@dataclass
class QuantizeConfig:
    """Which variants to build, how to evaluate them and which to keep."""

    variants: tuple[str, ...] | None = setting(
        None, aliases=("--variant",),
        help="Variants to try, e.g. dynamic-int8,static-qdq-minmax (presets such as arm64 name the variant they "
             "equal; see `edgetune quantize --list`); fp32 is always evaluated as the reference. Default: "
             f"{','.join(DEFAULT_VARIANTS)}; with auto, every variant (presets are not built twice).")
    auto: bool = setting(
        False, help="Try the variants (every one unless variants are given), exclude sensitive nodes where one "
                    "misses the budget, and keep the fastest inside it.")
    max_accuracy_drop: float = setting(
        0.5, help="Largest allowed accuracy loss against fp32, in percentage points on the validation split.")
    max_class_f1_drop: float | None = setting(
        None, help="Largest allowed F1 loss of any single class against fp32, in points on the validation split; "
                   "a variant whose worst class loses more is over budget however small its overall drop (int8 "
                   "hurts rare classes first). Default: no per-class budget.")
    calibration_samples: int = setting(200, help="Calibration texts fed through the graph to calibrate static "
                                                 "quantisation ranges.")
    latency_texts: int = setting(200, help="Validation texts timed one at a time (batch 1) for each variant.")
    threads: int = setting(1, help="ONNX Runtime intra-op threads while timing; 1 is what a phone app usually "
                                   "gets.")
    keep: str | None = setting(None, help="Variant to write when not auto. Default: the fastest one inside the "
                                          "budget.")
    validation: str | None = setting(
        None, help="Held-out labelled texts every variant is scored and timed on (CSV/TSV/JSONL/Parquet). "
                   "Default: the validation split the model was trained with.")
    calibration: str | None = setting(
        None, help="Texts to calibrate static quantisation on (CSV/TSV/JSONL/Parquet). Default: the training "
                   "split recorded at fine-tune time.")
    target: Literal["host", "avx512-vnni", "avx2", "arm64"] = setting(
        "host", help="CPU the bundle ships to. Another than this one's is emulated (scripts/emulate.sh, qemu-user): "
                     "variants are scored there and, latency there being the emulator's, the most accurate within "
                     "the budget is kept, then the smallest.")
    target_texts: int = setting(300, help="Validation texts scored on an emulated target (emulation is slow).")
    text_column: str | None = setting(None, help="Column of validation and calibration holding the text; "
                                                 "detected from common names when absent.")
    label_column: str | None = setting(None, help="Column of validation holding the label; detected from common "
                                                  "names when absent.")

    def __post_init__(self) -> None:
        if self.variants is None:
            # One rule for the CLI and recipes: auto tries every distinct graph unless told which.
            self.variants = tuple(VARIANTS) if self.auto else DEFAULT_VARIANTS
        unknown = [name for name in self.variants if not is_known_variant(name)]
        if unknown:
            raise ConfigError(f"variants: unknown variant {unknown[0]!r}; known: {', '.join(known_variant_names())}")
        # A preset is the variant it equals: resolved and de-duplicated, so no graph is built twice.
        self.variants = tuple(dict.fromkeys(resolve_variant(name) for name in self.variants))
        if self.max_accuracy_drop < 0:
            raise ConfigError(f"max_accuracy_drop: {self.max_accuracy_drop} must not be negative")
        if self.max_class_f1_drop is not None and not 0 <= self.max_class_f1_drop <= 100:
            raise ConfigError(f"max_class_f1_drop: {self.max_class_f1_drop} must be from 0 to 100 F1 points")
        for name in ("calibration_samples", "latency_texts", "threads", "target_texts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.keep is not None:
            if not is_known_variant(self.keep):
                raise ConfigError(f"keep: unknown variant {self.keep!r}; known: {', '.join(known_variant_names())}")
            self.keep = resolve_variant(self.keep)
