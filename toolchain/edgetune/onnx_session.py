"""ONNX Runtime sessions as every check in the toolchain runs them: the runtime's own session code,
with the session tuning the model directory's manifest records, so what is measured here is what
a device runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy

# Measured on the Banking77 MiniLM graph (ORT 1.31, AVX-512 VNNI, batch 1, ~13 tokens): ORT's fused
# SkipLayerNormalization kernel took ~44 us where Add + LayerNormalization took ~10 us, so edgetune
# graphs keep them apart, both in the offline optimiser and at session start. Flushing denormals
# to zero costs nothing in accuracy and spares GELU/LayerNorm slow paths on near-zero values.
FAST_SESSION_TUNING = {
    "disabled_optimizers": ["SkipLayerNormFusion"],
    "config_entries": {"session.set_denormal_as_zero": "1"},
}


def recorded_session_tuning(model_path: Path) -> dict:
    """The `session` tuning recorded by edgetune beside `model_path`, or none for foreign graphs."""
    manifest = Path(model_path).parent / "edgetune.json"
    if not manifest.is_file():
        return {}
    return json.loads(manifest.read_text(encoding="utf-8")).get("session", {})


def session_for(path: Path, threads: int, tuning: dict | None = None):
    """A CPU session with all graph optimisations, `threads` intra-op threads and the recorded tuning."""
    from edgetune_runtime.session import create_session

    return create_session(Path(path), intra_op_threads=threads, inter_op_threads=1,
                          tuning=recorded_session_tuning(path) if tuning is None else tuning)


def predict_logits(session, batches: list[dict[str, numpy.ndarray]]) -> numpy.ndarray:
    """Logits for pre-tokenised batches, feeding only the inputs the graph declares."""
    names = [graph_input.name for graph_input in session.get_inputs()]
    return numpy.concatenate([session.run(None, {n: batch[n] for n in names})[0] for batch in batches])
