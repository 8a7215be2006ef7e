"""Latency of a fine-tuned PyTorch model as a user would run it: the report's fp32 baseline.

Timed the way the runtime bench times a bundle: one text per call, tokenisation included, on the
same texts and thread count; throughput at the bench's largest batch size. The result is cached
beside the run (keyed by the model's stage key), so a re-run does no work.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from edgetune.atomic import write_json_atomic
from edgetune.stage_manifest import read_stage_manifest

_WARMUP_CALLS = 10  # the first calls allocate and pick kernels; they are not what a user sees


def measure_pytorch_baseline(model_dir: Path, texts_file: Path, cache_path: Path, latency_texts: int, threads: int,
                             batch_size: int) -> dict:
    """p50/p90 batch-1 ms and texts/s at `batch_size` of the model in `model_dir` on `texts_file`."""
    settings = {"latency_texts": latency_texts, "threads": threads, "batch_size": batch_size,
                "texts_file": str(texts_file)}
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if cached.get("settings") == settings:
            return cached
    import numpy
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with open(texts_file, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    max_length = int(read_stage_manifest(model_dir).get("training", {}).get("max_length") or 128)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            def classify(batch: list[str]) -> None:
                model(**tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))

            timed = texts[:latency_texts]
            for text in timed[:_WARMUP_CALLS]:
                classify([text])
            timings_ms = []
            for text in tqdm(timed, desc=f"PyTorch baseline {model_dir.name}", unit="text", leave=False):
                started = time.perf_counter()
                classify([text])
                timings_ms.append(1000 * (time.perf_counter() - started))
            batches = [timed[i:i + batch_size] for i in range(0, len(timed), batch_size)]
            started = time.perf_counter()
            for batch in batches:
                classify(batch)
            throughput = len(timed) / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous_threads)
    result = {"settings": settings, "texts": len(timed),
              "p50_ms": round(float(numpy.percentile(timings_ms, 50)), 3),
              "p90_ms": round(float(numpy.percentile(timings_ms, 90)), 3),
              "throughput_texts_per_s": round(throughput, 1)}
    write_json_atomic(cache_path, result)
    return result
