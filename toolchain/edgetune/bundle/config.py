"""Settings of `edgetune bundle`."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.errors import ConfigError


@dataclass
class BundleConfig:
    """What goes into a bundle besides the model."""

    golden_examples: int = setting(
        16, help="Real validation texts shipped with their expected outputs, so a device can verify the bundle.")
    # 0.15: int8 kernels differ by instruction set. The quickstart int8 bundle's golden probabilities moved by up
    # to 0.068 under emulated AVX2-only x86 (same labels; 0.02 refused 5 of 16), and by up to 0.10 on 600 test
    # texts; a broken graph moves the top label, which fails at any tolerance (benchmarks/README.md).
    golden_tolerance: float = setting(
        0.15, help="Largest drift of a golden example's probability on any device; its top label must also stay "
                   "unless it was a near tie (margin within the tolerance). Int8 kernels differ by CPU: 0.15 "
                   "holds on AVX-512 VNNI, AVX2-only and ARM64 as measured.")
    ort_format: bool = setting(False, aliases=("--ort",),
                               help="Also write model.ort and required_operators.config for ONNX Runtime "
                                    "mobile/minimal builds.")
    tokenizer_in_graph: bool = setting(
        False, help="Also write model_with_tokenizer.onnx (classifiers with a BERT WordPiece tokenizer): the "
                    "tokenizer as an onnxruntime-extensions op in front of the model, so an app without Python "
                    "feeds one raw text and reads the labels' probabilities. model.onnx is unchanged.")
    zip: bool = setting(False, help="Also write the bundle as one archive, OUTPUT with .zip appended, beside "
                                        "the directory (OUTPUT itself must not end in .zip).")
    validation: str | None = setting(
        None, help="Labelled texts the golden examples are drawn from (CSV/TSV/JSONL/Parquet). Default: the "
                   "validation split the model was trained with.")
    text_column: str | None = setting(None, help="Column of validation holding the text; detected from common "
                                                 "names when absent.")
    label_column: str | None = setting(None, help="Column of validation holding the label; detected from common "
                                                  "names when absent.")

    def __post_init__(self) -> None:
        if self.golden_examples < 1:
            raise ConfigError(f"golden_examples: {self.golden_examples} must be at least 1")
        if not 0 < self.golden_tolerance < 1:
            raise ConfigError(f"golden_tolerance: {self.golden_tolerance} must be in (0, 1)")
