"""Run ONNX graphs on saved inputs and save their first output: how `edgetune quantize --target` scores
variants on a CPU it is not running on (scripts/emulate.sh --exec runs this module under the emulator).

    python -m edgetune_runtime.graph_outputs FEEDS.npz OUTPUT_DIR MODEL.onnx...

FEEDS.npz holds batches as `<batch number>/<input name>` arrays; OUTPUT_DIR/<model stem>.npy gets the
first output of every batch, concatenated in batch order. Needs onnxruntime and numpy only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy


def save_feeds(path: str | Path, batches: list[dict[str, numpy.ndarray]]) -> None:
    """Write `batches` as FEEDS.npz, the layout `graph_outputs` reads."""
    numpy.savez(path, **{f"{number}/{name}": array for number, batch in enumerate(batches)
                         for name, array in batch.items()})


def graph_outputs(feeds_path: str | Path, output_dir: str | Path, models: list[str | Path]) -> None:
    """Save every model's first output on every batch of `feeds_path` under `output_dir`."""
    import onnxruntime

    from edgetune_runtime.atomic_write import atomic_path

    with numpy.load(feeds_path) as stored:
        batches: dict[int, dict[str, numpy.ndarray]] = {}
        for key in stored.files:
            number, _, name = key.partition("/")
            batches.setdefault(int(number), {})[name] = stored[key]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # under emulation threads only add translation work
    for model in map(Path, models):
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        names = [graph_input.name for graph_input in session.get_inputs()]
        outputs = [session.run(None, {name: batches[number][name] for name in names})[0]
                   for number in sorted(batches)]
        with atomic_path(Path(output_dir) / f"{model.stem}.npy") as temporary, open(temporary, "wb") as handle:
            numpy.save(handle, numpy.concatenate(outputs))
        print(f"{model.name}: {len(outputs)} batches", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python -m edgetune_runtime.graph_outputs FEEDS.npz OUTPUT_DIR MODEL.onnx...")
    graph_outputs(sys.argv[1], sys.argv[2], sys.argv[3:])
