"""A run report's row takes every figure from one pass: a bundle's from its bench's batch-1 run, a PyTorch
baseline's from its own batch-1 pass on the same texts, both scored by the runtime's scorer."""

from __future__ import annotations

import csv
import json
import os

import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.data.config import DataConfig
from edgetune.recipes.bench_stage import TEXTS_FILE, BenchStageConfig, bench_bundle
from edgetune.recipes.pytorch_baseline import measure_pytorch_baseline
from edgetune.recipes.report import bundle_row, worst_class_f1_change
from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1


@pytest.fixture(scope="module")
def bench_stage_output(tmp_path_factory, tiny_export_dir, small_banking77):
    directory = tmp_path_factory.mktemp("run_report")
    bundle_dir = build_bundle(tiny_export_dir, directory / "bundle", BundleConfig(golden_examples=2)).directory
    output = directory / "bench"
    bench_bundle(bundle_dir, output, BenchStageConfig(batch_sizes=(1, 4), limit=20, warmup=1, cold_starts=0),
                 DataConfig(train=str(small_banking77["train"]), test=str(small_banking77["test"])))
    return output


def test_a_bundle_row_reads_every_metric_from_the_batch1_run(bench_stage_output):
    result = json.loads((bench_stage_output / "bench.json").read_text())
    assert "per_class_f1" not in result  # no separate pass any more: each run carries its own
    batch1, batch4 = result["runs"]
    reference = {label: min(1.0, f1 + 0.1) for label, f1 in batch1["per_class_f1"].items()} | {"never_seen": 0.5}
    # Make the batch-4 run disagree everywhere: a row that mixed passes would show it.
    batch4 |= {"accuracy": 0.0, "macro_f1": 0.0, "per_class_f1": {label: 0.0 for label in batch1["per_class_f1"]}}
    row = bundle_row(result, "export", reference)
    assert (row.accuracy, row.macro_f1, row.p50_ms) == (batch1["accuracy"], batch1["macro_f1"], batch1["p50_ms"])
    assert row.worst_class_f1_change == worst_class_f1_change(batch1["per_class_f1"], reference)
    assert (row.throughput, row.throughput_batch_size) == (batch4["throughput_texts_per_s"], 4)
    assert bundle_row(result, "export", None).worst_class_f1_change is None


def test_worst_class_change_counts_labels_either_side_saw():
    assert worst_class_f1_change({"a": 0.9, "b": 0.5}, {"a": 0.8, "b": 0.7}) == -20.0
    assert worst_class_f1_change({"a": 0.9}, {"a": 0.8, "b": 0.3}) == -30.0  # b: never expected nor predicted here
    assert worst_class_f1_change({"a": 0.9, "c": 0.0}, {"a": 0.9}) == 0.0
    assert worst_class_f1_change(None, {"a": 1.0}) is None and worst_class_f1_change({"a": 1.0}, {}) is None


def test_pytorch_baseline_scores_its_timed_pass_on_the_bench_texts_and_caches(bench_stage_output,
                                                                              tiny_finetuned_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts_file = bench_stage_output / TEXTS_FILE
    cache = tmp_path / "baseline.json"
    baseline = measure_pytorch_baseline(tiny_finetuned_dir, texts_file, cache, threads=1, batch_size=4, limit=20)
    with open(texts_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:20]
    tokenizer = AutoTokenizer.from_pretrained(tiny_finetuned_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_finetuned_dir).eval()
    with torch.inference_mode():
        predicted = [model.config.id2label[int(model(**tokenizer([row["text"]], return_tensors="pt")).logits.argmax())]
                     for row in rows]
    expected = [row["label"] for row in rows]
    assert baseline["texts"] == 20
    assert baseline["accuracy"] == round(accuracy(expected, predicted), 4)
    assert baseline["macro_f1"] == round(macro_f1(expected, predicted), 4)
    assert baseline["per_class_f1"] == {label: round(f1, 4) for label, f1 in per_class_f1(expected, predicted).items()}
    assert 0 < baseline["p50_ms"] <= baseline["p90_ms"] and baseline["throughput_texts_per_s"] > 0

    written = cache.stat().st_mtime_ns
    assert measure_pytorch_baseline(tiny_finetuned_dir, texts_file, cache, threads=1, batch_size=4, limit=20) == \
        baseline and cache.stat().st_mtime_ns == written
    old = json.loads(cache.read_text())
    del old["settings"]["version"]  # a cache from before the one-pass baseline has no accuracy: measured again
    cache.write_text(json.dumps(old))
    os.utime(cache, ns=(written, written))
    again = measure_pytorch_baseline(tiny_finetuned_dir, texts_file, cache, threads=1, batch_size=4, limit=20)
    assert again["settings"]["version"] == 2 and cache.stat().st_mtime_ns != written
