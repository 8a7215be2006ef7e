"""Accuracy, per-class F1 and batch-1 latency of one ONNX variant on held-out text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from edgetune.finetune.metrics import classification_report
from edgetune.onnx_session import predict_logits, session_for

_WARMUP_CALLS = 10  # first calls allocate buffers and pick kernels; they are not what a user sees


@dataclass
class VariantEvaluation:
    name: str
    description: str
    size_mb: float
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    p50_ms: float
    p90_ms: float
    nodes: int
    excluded_nodes: list[str] = field(default_factory=list)
    test: dict | None = None

    def per_class_f1_change(self, reference: VariantEvaluation) -> dict[str, float]:
        """Change in F1 points per class against the reference (negative: this variant is worse)."""
        return {label: round(100 * (f1 - reference.per_class_f1[label]), 2) for label, f1 in self.per_class_f1.items()}


def batch1_latency_ms(session, single_batches: list[dict[str, numpy.ndarray]]) -> tuple[float, float]:
    """p50 and p90 of one-text calls, in milliseconds, after warm-up."""
    names = [graph_input.name for graph_input in session.get_inputs()]
    feeds = [{n: batch[n] for n in names} for batch in single_batches]
    for feed in feeds[:_WARMUP_CALLS]:
        session.run(None, feed)
    timings = []
    for feed in feeds:
        started = time.perf_counter()
        session.run(None, feed)
        timings.append((time.perf_counter() - started) * 1000)
    return float(numpy.percentile(timings, 50)), float(numpy.percentile(timings, 90))


def evaluate_variant(name: str, description: str, path: Path, eval_batches, eval_label_ids: numpy.ndarray,
                     label_names: list[str], latency_batches, threads: int, excluded: list[str],
                     tuning: dict | None = None) -> VariantEvaluation:
    import onnx

    session = session_for(path, threads, tuning)
    report = classification_report(predict_logits(session, eval_batches), eval_label_ids, label_names)
    p50, p90 = batch1_latency_ms(session, latency_batches)
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    return VariantEvaluation(
        name=name, description=description, size_mb=round(path.stat().st_size / 2**20, 2),
        accuracy=report["accuracy"], macro_f1=report["macro_f1"],
        per_class_f1={label: values["f1"] for label, values in report["per_class"].items()},
        p50_ms=round(p50, 3), p90_ms=round(p90, 3), nodes=nodes, excluded_nodes=excluded,
    )
