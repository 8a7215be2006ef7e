"""Predict every text of a CSV/TSV/JSONL/.txt file into JSON lines, streaming in constant memory.

Rows are read one at a time, predicted in chunks and written as they are done, so a file of
millions of texts needs no more memory than one chunk. With an output path the lines go to a
temporary file beside it, renamed into place only when every row has been predicted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edgetune_runtime.atomic_write import write_answers_file
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import InputError
from edgetune_runtime.texts_file import TextRow, read_texts

# Rows predicted together: enough for length bucketing to pay, small enough to bound memory.
CHUNK_BATCHES = 8


@dataclass
class FilePredictResult:
    rows: int
    output: Path | None


def predict_file(bundle: Bundle, input_path: str | Path, output_path: str | Path | None = None, *,
                 text_column: str | None = None, top_k: int = 1, batch_size: int = 32,
                 stream: TextIO | None = None) -> FilePredictResult:
    """Write one JSON line per input row: its row number, text and the `top_k` predictions.

    Without `output_path` the lines go to `stream` (default stdout) as they are predicted.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size: {batch_size} must be at least 1")
    if top_k < 1:
        raise InputError(f"--top-k: {top_k} must be at least 1")
    top_k = min(top_k, len(bundle.labels))
    rows = read_texts(input_path, text_column=text_column)
    if output_path is None:
        return FilePredictResult(_write(bundle, rows, stream or sys.stdout, top_k, batch_size), None)
    output_path = Path(output_path)
    count = write_answers_file(input_path, output_path, lambda handle: _write(bundle, rows, handle, top_k, batch_size))
    return FilePredictResult(count, output_path)


def _write(bundle: Bundle, rows: Iterator[TextRow], handle: TextIO, top_k: int, batch_size: int) -> int:
    count = 0
    for chunk in _chunks(rows, batch_size * CHUNK_BATCHES):
        predictions = bundle.predict([row.text for row in chunk], top_k=top_k, batch_size=batch_size)
        for row, top in zip(chunk, predictions, strict=True):
            handle.write(json.dumps({"row": row.row, "text": row.text, "predictions": [
                {"label": p.label, "probability": round(p.probability, 6)} for p in top]}, ensure_ascii=False))
            handle.write("\n")
        count += len(chunk)
        handle.flush()  # a reader of the stream sees each chunk as soon as it is done
    return count


def _chunks(rows: Iterator[TextRow], size: int) -> Iterator[list[TextRow]]:
    chunk: list[TextRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
