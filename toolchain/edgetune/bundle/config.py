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
    golden_tolerance: float = setting(
        0.02, help="Largest probability drift a device may show on a golden example (int8 kernels differ by CPU).")
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
