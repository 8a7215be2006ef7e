"""ONNX Runtime sessions as every check in the toolchain runs them (CPU, all graph optimisations)."""

from __future__ import annotations

from pathlib import Path

import numpy


def session_for(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_logits(session, batches: list[dict[str, numpy.ndarray]]) -> numpy.ndarray:
    """Logits for pre-tokenised batches, feeding only the inputs the graph declares."""
    names = [graph_input.name for graph_input in session.get_inputs()]
    return numpy.concatenate([session.run(None, {n: batch[n] for n in names})[0] for batch in batches])
