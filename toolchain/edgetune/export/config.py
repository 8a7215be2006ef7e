"""Settings of an ONNX export."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.errors import ConfigError


@dataclass
class ExportConfig:
    """How to export a fine-tuned classifier to ONNX and how strictly to check it."""

    opset: int = setting(17, help="ONNX opset; 17 is the oldest with LayerNormalization as one op (faster, "
                                  "fusable).")
    parity_texts: int = setting(256, help="Held-out texts on which ONNX Runtime logits must match PyTorch's.")
    max_abs_diff: float = setting(1e-4, help="Largest allowed absolute logit difference in fp32; argmax must agree "
                                             "on every text.")
    optimize: bool = setting(True, help="Run ONNX Runtime's transformer optimiser (attention, GELU, embedding "
                                        "fusions).")
    prune_to_first_token: bool = setting(
        True, help="With optimize: compute the last layer only for the first token, the one the classifier reads "
                   "(same logits, gated on parity; about a sixth less work for a 6-layer model).")
    batch_size: int = setting(32, help="Texts per forward pass during the parity check.")
    validation: str | None = setting(
        None, aliases=("--texts",),
        help="Held-out labelled texts for the parity gate (CSV/TSV/JSONL/Parquet). Default: the validation split "
             "the model was trained with.")
    text_column: str | None = setting(None, help="Column of validation holding the text; detected from common "
                                                 "names when absent.")
    label_column: str | None = setting(None, help="Column of validation holding the label; detected from common "
                                                  "names when absent.")

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ConfigError(f"opset: {self.opset} is below 17, the minimum edgetune exports")
        if self.parity_texts < 1:
            raise ConfigError(f"parity_texts: {self.parity_texts} must be at least 1")
        if self.max_abs_diff <= 0:
            raise ConfigError(f"max_abs_diff: {self.max_abs_diff} must be greater than zero")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: {self.batch_size} must be at least 1")
