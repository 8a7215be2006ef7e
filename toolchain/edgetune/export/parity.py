"""The parity gate: ONNX Runtime must reproduce PyTorch's logits on real held-out text."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy

from edgetune.errors import EdgetuneError


class ParityError(EdgetuneError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass
class ParityReport:
    texts_compared: int
    argmax_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    max_abs_diff_allowed: float

    @property
    def passed(self) -> bool:
        return self.argmax_agreement == 1.0 and self.max_abs_diff <= self.max_abs_diff_allowed

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}

    def describe(self) -> str:
        return (f"{self.texts_compared} held-out texts: argmax agreement {self.argmax_agreement:.2%}, "
                f"max |logit diff| {self.max_abs_diff:.2e} (allowed {self.max_abs_diff_allowed:.0e}), "
                f"mean {self.mean_abs_diff:.2e}")


def onnx_logits(onnx_path: Path, encoded_batches: list[dict[str, numpy.ndarray]], threads: int = 0,
                tuning: dict | None = None) -> numpy.ndarray:
    """Logits from ONNX Runtime for pre-tokenised batches."""
    from edgetune.onnx_session import predict_logits, session_for

    return predict_logits(session_for(onnx_path, threads, tuning), encoded_batches)


def encode_batches(tokenizer, texts: list[str], batch_size: int, max_length: int) -> list[dict[str, numpy.ndarray]]:
    """int64 numpy batches, each padded to its own longest text (as the device will see them)."""
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
        batches.append({name: value.astype(numpy.int64) for name, value in encoded.items()})
    return batches


def compare_logits(reference: numpy.ndarray, candidate: numpy.ndarray, max_abs_diff_allowed: float) -> ParityReport:
    difference = numpy.abs(reference.astype(numpy.float64) - candidate.astype(numpy.float64))
    return ParityReport(
        texts_compared=int(reference.shape[0]),
        argmax_agreement=float((reference.argmax(-1) == candidate.argmax(-1)).mean()),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        max_abs_diff_allowed=max_abs_diff_allowed,
    )
