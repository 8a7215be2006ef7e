"""Benchmark: the in-graph tokenizer (`edgetune bundle --tokenizer-in-graph`) against the Python runtime path.

Builds a bundle with model_with_tokenizer.onnx from an `edgetune quantize` (or export) output, then on
the Banking77 test split (3,080 texts):
1. agreement: the text model's top label and probabilities against `bundle.predict_proba([text])`;
2. batch-1 latency, one thread, three contestants taking shuffled turns on every text
   (`edgetune_runtime.timing.interleaved_timings`): `bundle.predict([text])` (Rust/Python tokenizer +
   model.onnx), `text_model.predict_proba([text])` (onnxruntime-extensions' tokenizer inside the graph)
   and a bare `session.run` of model.onnx on pre-tokenised ids (the model alone). The text model's p50
   minus the Python path's is the latency cost of carrying the tokenizer in the graph.

    nice -n 10 python benchmarks/text_model_banking77.py runs/quickstart/latest/int8
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_times, run_context, steal_fraction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BANKING77_TEST = REPO.parent / "shared" / "data" / "banking77" / "test.csv"
WARMUP_TEXTS = 20  # first calls allocate buffers and pick kernels


def _percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": round(float(numpy.percentile(values, q)), 4) for q in (50, 90, 99)}


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--texts", "text_count", default=3080, show_default=True, help="Test texts timed (agreement uses all).")
@click.option("--name", default="text_model_banking77", show_default=True, help="Result file name, without .json.")
def main(source: Path, text_count: int, name: str) -> None:
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig
    from edgetune_runtime.bundle import Bundle
    from edgetune_runtime.timing import interleaved_timings

    with open(BANKING77_TEST, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    cpu_before, load_before = cpu_times(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="text-model-bench-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        started = time.perf_counter()
        build_bundle(source, bundle_dir, BundleConfig(tokenizer_in_graph=True))
        build_s = time.perf_counter() - started
        sizes_mb = {path.name: round(path.stat().st_size / 2**20, 2) for path in bundle_dir.glob("*.onnx")}
        bundle = Bundle.load(bundle_dir, intra_op_threads=1)
        text_model = bundle.text_model(intra_op_threads=1)
        golden = {"bundle": bundle.verify().passed, "text_model": text_model.verify().passed}

        python_path = numpy.stack([bundle.predict_proba([text])[0] for text in texts])
        in_graph = text_model.predict_proba(texts)
        drift = numpy.abs(python_path - in_graph).max(axis=1)
        agreement = {"texts": len(texts), "same_top_label": int((python_path.argmax(1) == in_graph.argmax(1)).sum()),
                     "max_probability_difference": float(drift.max()),
                     "texts_over_1e-4": int((drift > 1e-4).sum())}

        timed = texts[:text_count]
        feeds = [bundle._features.single(*bundle.token_ids(text)) for text in timed]
        output = [bundle._output_names[0]]
        contestants = {
            "python_runtime_predict": lambda i: bundle.predict([timed[i]]),
            "text_model_in_graph_tokenizer": lambda i: text_model.predict_proba([timed[i]]),
            "model_onnx_pretokenised": lambda i: bundle.session.run(output, feeds[i]),
        }
        timings = interleaved_timings(contestants, len(timed), warmup=WARMUP_TEXTS)
    latency = {contestant: _percentiles(values) for contestant, values in timings.items()}
    cost_ms = round(latency["text_model_in_graph_tokenizer"]["p50_ms"] - latency["python_runtime_predict"]["p50_ms"], 4)
    ratio = round(latency["text_model_in_graph_tokenizer"]["p50_ms"] / latency["python_runtime_predict"]["p50_ms"], 3)
    result = {
        "benchmark": name,
        "source": str(source),
        "bundle_build_s": round(build_s, 1),
        "file_sizes_mb": sizes_mb,
        "golden_passed": golden,
        "agreement": agreement,
        "batch1_one_thread": latency,
        "text_model_p50_cost_ms": cost_ms,
        "text_model_p50_vs_python_path": ratio,
        "timed_texts": len(timed),
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
        # Other work on the machine inflates every contestant's milliseconds; the shuffled turns keep their ratios.
        "load_average_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
    } | run_context()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'contestant':<34}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for contestant, row in latency.items():
        print(f"{contestant:<34}{row['p50_ms']:>9.3f}{row['p90_ms']:>9.3f}{row['p99_ms']:>9.3f}")
    print(json.dumps({"agreement": agreement, "text_model_p50_cost_ms": cost_ms, "text_model_p50_vs_python_path": ratio,
                      "golden_passed": golden}))


if __name__ == "__main__":
    main()
