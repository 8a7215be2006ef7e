"""Accuracy and per-class F1 of ONNX variants on held-out text, and their batch-1 latency timed side by side."""

from __future__ import annotations

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

    The sessions take shuffled turns on each text (`edgetune_runtime.timing.interleaved_timings`), so
    load on a shared machine and cache eviction by a large model land on every variant alike.
    """
    from edgetune_runtime.timing import interleaved_timings

    feeds = {name: [{i.name: batch[i.name] for i in session.get_inputs()} for batch in single_batches]
             for name, session in sessions.items()}

    def contestant(session, session_feeds: list[dict]):
        return lambda index: session.run(None, session_feeds[index])

    timings = interleaved_timings({name: contestant(session, feeds[name]) for name, session in sessions.items()},
                                  len(single_batches), warmup=_WARMUP_CALLS)
    return {name: (float(numpy.percentile(values, 50)), float(numpy.percentile(values, 90)))
            for name, values in timings.items()}


def evaluate_variant(name: str, description: str, path: Path, session, eval_batches, eval_label_ids: numpy.ndarray,
                     label_names: list[str], excluded: list[str], outputs: numpy.ndarray | None = None
                     ) -> VariantEvaluation:
    """Accuracy, macro-F1, per-class F1, size and node count of the graph at `path`, run by `session`;
    latency is timed later, side by side with the other variants, on the same session. `outputs`: the
    logits computed elsewhere (on an emulated CPU, quantize/target.py) instead of by `session`."""
    import onnx

    logits = predict_logits(session, eval_batches) if outputs is None else outputs
    report = classification_report(logits, eval_label_ids, label_names)
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    return VariantEvaluation(
        name=name, description=description, size_mb=round(path.stat().st_size / 2**20, 2),
        accuracy=report["accuracy"], macro_f1=report["macro_f1"],
        per_class_f1={label: values["f1"] for label, values in report["per_class"].items()},
        nodes=nodes, excluded_nodes=excluded,
    )
