"""The quantisation variants edgetune knows, including named ISA presets in the spirit of Optimum's."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

VariantKind = Literal["fp32", "fp16", "dynamic", "static", "weight-only"]


@dataclass(frozen=True)
class VariantSpec:
    """One way to turn the fp32 graph into a smaller or faster one."""

    name: str
    kind: VariantKind
    description: str
    per_channel: bool = False
    reduce_range: bool = False
    quant_format: Literal["QDQ", "QOperator"] = "QDQ"
    calibration: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    activation_type: Literal["QUInt8", "QInt8"] = "QUInt8"
    weight_type: Literal["QUInt8", "QInt8"] = "QInt8"
    nodes_to_exclude: tuple[str, ...] = ()
    weight_bits: int = 8
    """weight-only variants: bits per weight in MatMulNBits blocks of 32."""
    approximate_gelu: bool = False
    """Swap exact (erf) BiasGelu nodes for the tanh approximation, FastGelu: cheaper, slightly different."""

    def excluding(self, nodes: tuple[str, ...], suffix: str) -> VariantSpec:
        return replace(self, name=f"{self.name}+{suffix}", nodes_to_exclude=self.nodes_to_exclude + nodes)


def _static(format_name: str, method: str) -> VariantSpec:
    short = "qdq" if format_name == "QDQ" else "qop"
    return VariantSpec(f"static-{short}-{method.lower()}", "static",
                       f"static int8, {format_name} format, {method} calibration on training texts",
                       per_channel=format_name == "QDQ", quant_format=format_name, calibration=method)


VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in (
    VariantSpec("fp32", "fp32", "the exported graph, unquantised (the reference)"),
    VariantSpec("fp16", "fp16", "float16 weights and activations, float32 inputs and outputs"),
    VariantSpec("dynamic-int8", "dynamic", "dynamic int8: int8 weights per tensor, activations quantised at run time"),
    VariantSpec("dynamic-int8-per-channel", "dynamic", "dynamic int8 with per-channel weight scales",
                per_channel=True),
    VariantSpec("dynamic-int8-fast-gelu", "dynamic", "dynamic int8 per tensor, GELU by its tanh approximation "
                "(FastGelu)", approximate_gelu=True),
    VariantSpec("dynamic-int8-per-channel-fast-gelu", "dynamic", "dynamic int8 per channel, GELU by its tanh "
                "approximation (FastGelu)", per_channel=True, approximate_gelu=True),
    *(_static(fmt, method) for fmt in ("QDQ", "QOperator") for method in ("MinMax", "Entropy", "Percentile")),
    # MatMulNBits: block-quantised weights with int8 compute (accuracy level 4); its kernels target
    # the small-M matrix products of batch-1 inference.
    VariantSpec("weight-only-int8", "weight-only", "MatMulNBits 8-bit weights (blocks of 32), int8 compute",
                weight_bits=8),
    VariantSpec("weight-only-int4", "weight-only", "MatMulNBits 4-bit weights (blocks of 32), int8 compute",
                weight_bits=4),
    # Optimum's avx2 preset: the one ISA preset whose graph differs from every variant above.
    VariantSpec("avx2", "dynamic", "preset for x86 AVX2 without VNNI: dynamic u8s8, reduced range to avoid "
                "16-bit accumulator saturation", per_channel=True, reduce_range=True),
)}

# ISA presets in the spirit of Optimum's AutoQuantizationConfig. Those that build exactly the graph of a
# variant are names for it, so `--auto` never builds (and times) one graph twice.
PRESETS: dict[str, str] = {
    "avx512_vnni": "dynamic-int8-per-channel",  # x86 with AVX-512 VNNI: dynamic u8s8, per channel
    "arm64": "dynamic-int8-per-channel",        # ARM64 with the NEON dot product: dynamic u8s8, per channel
}


def resolve_variant(name: str) -> str:
    """The variant a name stands for: itself, or the variant a preset equals."""
    return PRESETS.get(name, name)


def is_known_variant(name: str) -> bool:
    return name in VARIANTS or name in PRESETS

DEFAULT_VARIANTS = ("fp32", "fp16", "dynamic-int8", "dynamic-int8-per-channel", "dynamic-int8-fast-gelu",
                    "dynamic-int8-per-channel-fast-gelu", "static-qdq-minmax", "static-qop-minmax")


def known_variant_names() -> list[str]:
    return [*VARIANTS, *PRESETS]


def dynamic_variant_names() -> list[str]:
    """Variants and presets that build a dynamic int8 graph: int8 without calibration texts."""
    return [name for name in known_variant_names() if VARIANTS[resolve_variant(name)].kind == "dynamic"]
