"""Run ONNX graphs on saved inputs and save their first output: how `edgetune quantize --target` scores
variants on a CPU it is not running on (scripts/emulate.sh --exec runs this module under the emulator).

    python -m edgetune_runtime.graph_outputs FEEDS.json OUTPUT_DIR MODEL.onnx...

FEEDS.json holds a list of batches, each {input name: {"dtype", "shape", "values"}}: JSON, because the
runtime never calls `numpy.load` (an .npz can carry pickled objects; tests/test_hardening_bundles.py).
OUTPUT_DIR/<model stem>.npy gets the first output of every batch, concatenated in batch order. Needs
onnxruntime and numpy only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy


def save_feeds(path: str | Path, batches: list[dict[str, numpy.ndarray]]) -> None:
    """Write `batches` as FEEDS.json, the layout `graph_outputs` reads."""
    Path(path).write_text(json.dumps([{name: {"dtype": str(array.dtype), "shape": list(array.shape),
                                              "values": array.ravel().tolist()} for name, array in batch.items()}
                                      for batch in batches]))


def _read_feeds(path: str | Path) -> list[dict[str, numpy.ndarray]]:
    from edgetune_runtime.json_limits import loads_bounded

    stored = loads_bounded(Path(path).read_bytes(), str(path))
    return [{name: numpy.asarray(entry["values"], dtype=numpy.dtype(entry["dtype"])).reshape(entry["shape"])
             for name, entry in batch.items()} for batch in stored]


def graph_outputs(feeds_path: str | Path, output_dir: str | Path, models: list[str | Path]) -> None:
    """Save every model's first output on every batch of `feeds_path` under `output_dir`."""
    import onnxruntime

    from edgetune_runtime.atomic_write import atomic_path

    batches = _read_feeds(feeds_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # under emulation threads only add translation work
    for model in map(Path, models):
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        names = [graph_input.name for graph_input in session.get_inputs()]
        outputs = [session.run(None, {name: batch[name] for name in names})[0] for batch in batches]
        with atomic_path(Path(output_dir) / f"{model.stem}.npy") as temporary, open(temporary, "wb") as handle:
            numpy.save(handle, numpy.concatenate(outputs))
        print(f"{model.name}: {len(outputs)} batches", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python -m edgetune_runtime.graph_outputs FEEDS.json OUTPUT_DIR MODEL.onnx...")
    graph_outputs(sys.argv[1], sys.argv[2], sys.argv[3:])
