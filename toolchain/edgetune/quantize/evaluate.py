"""Accuracy and per-class F1 of ONNX variants on held-out text, and their batch-1 latency timed side by side."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from edgetune.finetune.metrics import classification_report
from edgetune.onnx_session import predict_logits

_WARMUP_CALLS = 10  # first calls allocate buffers and pick kernels; they are not what a user sees


@dataclass
class VariantEvaluation:
    name: str
    description: str
    size_mb: float
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    nodes: int
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    excluded_nodes: list[str] = field(default_factory=list)
    test: dict | None = None

    def per_class_f1_change(self, reference: VariantEvaluation) -> dict[str, float]:
        """Change in F1 points per class against the reference (negative: this variant is worse)."""
        return {label: round(100 * (f1 - reference.per_class_f1[label]), 2) for label, f1 in self.per_class_f1.items()}


def interleaved_batch1_latency_ms(sessions: dict[str, object], single_batches: list[dict[str, numpy.ndarray]]
                                  ) -> dict[str, tuple[float, float]]:
    """p50 and p90 of one-text calls per session, in milliseconds, after warm-up.

    The sessions take turns on each text rather than running one after another, so a burst of
    load on a shared or throttling machine lands on every variant alike: their ratios stay honest
    even when the milliseconds do not. The turn order is shuffled per text (seeded): a call right
    after a large model's call finds its weights pushed out of the CPU caches, and in a fixed order
    the session behind the fp32 graph always paid for that (measured: 7% on its p50).
    """
    feeds = {name: [{i.name: batch[i.name] for i in session.get_inputs()} for batch in single_batches]
             for name, session in sessions.items()}
    for name, session in sessions.items():
        for feed in feeds[name][:_WARMUP_CALLS]:
            session.run(None, feed)
    timings: dict[str, list[float]] = {name: [] for name in sessions}
    turns, shuffle = list(sessions), random.Random(0).shuffle
    for index in range(len(single_batches)):
        shuffle(turns)
        for name in turns:
            session, feed = sessions[name], feeds[name][index]
            started = time.perf_counter()
            session.run(None, feed)
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: (float(numpy.percentile(values, 50)), float(numpy.percentile(values, 90)))
            for name, values in timings.items()}


def evaluate_variant(name: str, description: str, path: Path, session, eval_batches, eval_label_ids: numpy.ndarray,
                     label_names: list[str], excluded: list[str]) -> VariantEvaluation:
    """Accuracy, macro-F1, per-class F1, size and node count of the graph at `path`, run by `session`;
    latency is timed later, side by side with the other variants, on the same session."""
    import onnx

    report = classification_report(predict_logits(session, eval_batches), eval_label_ids, label_names)
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    return VariantEvaluation(
        name=name, description=description, size_mb=round(path.stat().st_size / 2**20, 2),
        accuracy=report["accuracy"], macro_f1=report["macro_f1"],
        per_class_f1={label: values["f1"] for label, values in report["per_class"].items()},
        nodes=nodes, excluded_nodes=excluded,
    )
