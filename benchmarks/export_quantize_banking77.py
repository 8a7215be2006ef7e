"""Benchmark: a fine-tuned Banking77 classifier through edgetune export → quantize --auto → bundle,
beside the path a user takes by hand with Optimum (`optimum-cli export onnx`, then
`optimum-cli onnxruntime quantize --avx512_vnni`), measured in the same run on the same texts.

Every model is scored on the Banking77 test split (3,080 texts): accuracy, macro-F1, worst per-class
F1 change against our fp32 ONNX graph, size, and batch-1 latency (p50/p90) on one thread over the test
texts. Speed is compared as ratios, which survive a noisy machine better than milliseconds.

    python benchmarks/export_quantize_banking77.py runs/bench/all-MiniLM-L6-v2-full
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_times, run_context, steal_fraction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _score(session, path: Path, batches, label_ids, label_names) -> dict:
    from edgetune.finetune.metrics import classification_report
    from edgetune.onnx_session import predict_logits

    report = classification_report(predict_logits(session, batches), label_ids, label_names)
    return {"accuracy": round(report["accuracy"], 4), "macro_f1": round(report["macro_f1"], 4),
            "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()},
            "size_mb": round(path.stat().st_size / 2**20, 2)}


def _optimum_by_hand(model_dir: Path, work: Path) -> Path:
    exported, quantized = work / "optimum-onnx", work / "optimum-int8"
    for command in (
        ["optimum-cli", "export", "onnx", "--model", str(model_dir), "--task", "text-classification", str(exported)],
        ["optimum-cli", "onnxruntime", "quantize", "--onnx_model", str(exported), "--avx512_vnni",
         "-o", str(quantized)],
    ):
        subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]], check=True,
                       capture_output=True, text=True)
    return next(quantized.glob("*.onnx"))


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--work-dir", type=click.Path(file_okay=False), default=str(REPO / "runs" / "bench-export"),
              show_default=True)
@click.option("--latency-texts", type=int, default=3080, show_default=True,
              help="Test texts timed one at a time per model.")
@click.option("--name", default="export_quantize_banking77", show_default=True)
def main(model_dir: str, work_dir: str, latency_texts: int, name: str) -> None:
    from transformers import AutoTokenizer

    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig
    from edgetune.export.config import ExportConfig
    from edgetune.export.heldout import heldout_split
    from edgetune.export.onnx_export import export_onnx
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edgetune").setLevel(logging.INFO)
    model_dir, work = Path(model_dir), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cpu_before = cpu_times()
    stage_seconds = {}
    started = time.perf_counter()
    export_onnx(model_dir, work / "onnx", ExportConfig(), force=True)
    stage_seconds["export"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    report = quantize(work / "onnx", work / "int8", QuantizeConfig(auto=True, variants=tuple(
        ["fp32", "fp16", "dynamic-int8", "dynamic-int8-per-channel", "dynamic-int8-per-channel-fast-gelu",
         "static-qdq-minmax", "static-qop-minmax",
         "static-qop-percentile", "avx512_vnni", "avx2", "weight-only-int8", "weight-only-int4"])), force=True)
    stage_seconds["quantize"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    build_bundle(work / "int8", work / "bundle", BundleConfig(zip=True), force=True)
    stage_seconds["bundle"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    optimum_int8 = _optimum_by_hand(model_dir, work)
    stage_seconds["optimum_by_hand"] = round(time.perf_counter() - started, 1)

    texts, labels = heldout_split(model_dir, "test")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    label_names = json.loads((work / "onnx" / "edgetune.json").read_text())["labels"]
    label_ids = numpy.array([label_names.index(label) for label in labels])
    bundle_tuning = json.loads((work / "bundle" / "manifest.json").read_text())["session"]
    # Each graph runs as its user would run it: the bundle with the session tuning its manifest
    # carries (what edgetune-runtime applies), Optimum's model with a default session. The last
    # row gives Optimum's graph edgetune's tuning too, to show how much is graph and how much session.
    candidates = {
        "edgetune fp32 (exported + fused)": (work / "onnx" / "model.onnx", bundle_tuning),
        f"edgetune bundle ({report['chosen']})": (work / "bundle" / "model.onnx", bundle_tuning),
        "optimum by hand (avx512_vnni int8)": (optimum_int8, {}),
        "optimum by hand + edgetune session tuning": (optimum_int8, bundle_tuning),
    }
    from edgetune.export.parity import encode_batches
    from edgetune.onnx_session import session_for
    from edgetune.quantize.evaluate import interleaved_batch1_latency_ms

    sessions = {label: session_for(path, threads=1, tuning=tuning) for label, (path, tuning) in candidates.items()}
    eval_batches = encode_batches(tokenizer, texts, 64, 128)
    rows = {label: _score(sessions[label], path, eval_batches, label_ids, label_names)
            for label, (path, _) in candidates.items()}
    # Side by side on each text, so noise on this shared machine lands on every model alike.
    latencies = interleaved_batch1_latency_ms(sessions, encode_batches(tokenizer, texts[:latency_texts], 1, 128))
    for label, (p50, p90) in latencies.items():
        rows[label] |= {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3)}
    reference_f1 = rows["edgetune fp32 (exported + fused)"]["per_class_f1"]
    reference = rows["edgetune fp32 (exported + fused)"]
    for row in rows.values():
        changes = [100 * (row["per_class_f1"][k] - reference_f1[k]) for k in reference_f1]
        row["worst_class_f1_change_points"] = round(min(changes), 2)
    for row in rows.values():
        row.pop("per_class_f1")
    ours = rows[f"edgetune bundle ({report['chosen']})"]
    theirs = rows["optimum by hand (avx512_vnni int8)"]
    result = {
        "benchmark": name,
        "model_dir": str(model_dir),
        "evaluated_on": f"Banking77 test split, {len(texts)} texts; latency over the first {latency_texts}, "
                        "batch 1, one thread",
        "rows": rows,
        "chosen_variant": report["chosen"],
        "quantize_variants_on_validation": report["variants"],
        "p50_speedup_vs_optimum_int8": round(theirs["p50_ms"] / ours["p50_ms"], 3),
        "p50_speedup_vs_optimum_int8_with_edgetune_session_tuning": round(
            rows["optimum by hand + edgetune session tuning"]["p50_ms"] / ours["p50_ms"], 3),
        "accuracy_drop_vs_fp32_points": round(100 * (reference["accuracy"] - ours["accuracy"]), 2),
        "targets": {"accuracy_drop_vs_fp32_points_max": 0.5, "size_mb_max": 25, "p50_speedup_vs_optimum_min": 1.3},
        "stage_seconds": stage_seconds,
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
    } | run_context()
    result["meets_targets"] = {
        "accuracy": result["accuracy_drop_vs_fp32_points"] <= 0.5,
        "size": ours["size_mb"] <= 25,
        "speed": result["p50_speedup_vs_optimum_int8"] >= 1.3,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'model':<44}{'acc':>8}{'macro-F1':>10}{'worst ΔF1':>11}{'MB':>7}{'p50 ms':>9}{'p90 ms':>9}")
    for label, row in rows.items():
        print(f"{label:<44}{row['accuracy']:>8.2%}{row['macro_f1']:>10.4f}{row['worst_class_f1_change_points']:>11.2f}"
              f"{row['size_mb']:>7.1f}{row['p50_ms']:>9.3f}{row['p90_ms']:>9.3f}")
    print(json.dumps({k: result[k] for k in ("chosen_variant", "p50_speedup_vs_optimum_int8",
                                              "accuracy_drop_vs_fp32_points", "meets_targets")}))


if __name__ == "__main__":
    main()
