"""Settings of a quantisation run."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.errors import ConfigError
from edgetune.quantize.variants import DEFAULT_VARIANTS, VARIANTS


@dataclass
class QuantizeConfig:
    """Which variants to build, how to evaluate them and which to keep."""

    variants: tuple[str, ...] = DEFAULT_VARIANTS
    """Variant names (see `edgetune quantize --list`); fp32 is always evaluated as the reference."""
    auto: bool = False
    """Try the variants, exclude sensitive nodes where one misses the budget, keep the fastest inside it."""
    max_accuracy_drop: float = 0.5
    """Largest allowed accuracy loss against fp32, in percentage points on the validation split."""
    calibration_samples: int = 200
    """Training texts fed through the graph to calibrate static quantisation ranges."""
    latency_texts: int = 200
    """Validation texts timed one at a time (batch 1) for each variant."""
    threads: int = 1
    """ONNX Runtime intra-op threads while timing; 1 is what a phone app usually gets."""
    keep: str | None = None
    """Variant to write when not `auto`; default: the fastest one inside the budget."""
    validation: str | None = None
    """Labelled held-out data scoring each variant; default: the validation split recorded at fine-tuning."""
    calibration: str | None = None
    """Texts calibrating static quantisation; default: the training split recorded at fine-tuning."""
    text_column: str | None = None
    """Column of `validation`/`calibration` holding the text; detected from common names when absent."""
    label_column: str | None = None
    """Column of `validation` holding the label; detected from common names when absent."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.variants if name not in VARIANTS]
        if unknown:
            raise ConfigError(f"variants: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
        if self.max_accuracy_drop < 0:
            raise ConfigError(f"max_accuracy_drop: {self.max_accuracy_drop} must not be negative")
        for name in ("calibration_samples", "latency_texts", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.keep is not None and self.keep not in VARIANTS:
            raise ConfigError(f"keep: unknown variant {self.keep!r}")
