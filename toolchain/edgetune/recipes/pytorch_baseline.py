"""A fine-tuned PyTorch model as a user would run it: the report's fp32 baseline, measured in one pass.

One text per call, tokenisation included, on the texts the bench scored its bundles on and at the
same thread count, through the runtime's timing loop (`edgetune_runtime.timing`). The labels those
calls predict give accuracy, macro-F1 and per-class F1 with the runtime's scorer, so a bundle's row
and its baseline are scored on the same texts the same way. Throughput is timed at the bench's
largest batch size. The result is cached beside the run (keyed by the model's stage key and these
settings), so a re-run does no work.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from edgetune.stage_manifest import read_stage_manifest

_WARMUP_CALLS = 10  # the first calls allocate and pick kernels; they are not what a user sees
_CACHE_VERSION = 2
"""2: accuracy, macro-F1 and per-class F1 come from the timed pass (1 had latency only)."""


def measure_pytorch_baseline(model_dir: Path, texts_file: Path, cache_path: Path, threads: int, batch_size: int,
                             limit: int | None = None) -> dict:
    """Accuracy, macro-F1, per-class F1, p50/p90 batch-1 ms and texts/s at `batch_size` of the model in
    `model_dir` on the first `limit` (default: all) rows of the labelled `texts_file` (columns `text` and
    `label`, as the bench stage writes it)."""
    from edgetune_runtime.hashing import sha256_file

    # The texts' hash, not only their path: a re-run bench stage may have written other texts there.
    settings = {"version": _CACHE_VERSION, "threads": threads, "batch_size": batch_size, "limit": limit,
                "texts_file": str(texts_file), "texts_sha256": sha256_file(texts_file)}
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if cached.get("settings") == settings:
            return cached
    import numpy
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune_runtime.atomic_write import write_json_atomic
    from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1
    from edgetune_runtime.timing import interleaved_timings

    with open(texts_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    texts, expected = [row["text"] for row in rows], [row["label"] for row in rows]
    max_length = int(read_stage_manifest(model_dir).get("training", {}).get("max_length") or 128)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    id2label = model.config.id2label
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    predicted: list[str] = [""] * len(texts)
    batches = [texts[start:start + batch_size] for start in range(0, len(texts), batch_size)]
    try:
        with torch.inference_mode():
            def classify(batch: list[str]) -> list[str]:
                logits = model(**tokenizer(batch, truncation=True, max_length=max_length, padding=True,
                                           return_tensors="pt")).logits
                return [id2label[int(index)] for index in logits.argmax(dim=-1)]

            def one_text(index: int) -> None:
                predicted[index] = classify([texts[index]])[0]

            batch1_ms = interleaved_timings({"pytorch": one_text}, len(texts), warmup=_WARMUP_CALLS)["pytorch"]
            batched_ms = interleaved_timings({"pytorch": lambda index: classify(batches[index])}, len(batches),
                                             warmup=1)["pytorch"]
    finally:
        torch.set_num_threads(previous_threads)
    result = {"settings": settings, "texts": len(texts),
              "accuracy": round(accuracy(expected, predicted), 4),
              "macro_f1": round(macro_f1(expected, predicted), 4),
              "per_class_f1": {label: round(f1, 4) for label, f1 in per_class_f1(expected, predicted).items()},
              "p50_ms": round(float(numpy.percentile(batch1_ms, 50)), 3),
              "p90_ms": round(float(numpy.percentile(batch1_ms, 90)), 3),
              "throughput_texts_per_s": round(len(texts) / (sum(batched_ms) / 1000), 1)}
    write_json_atomic(cache_path, result)
    return result
