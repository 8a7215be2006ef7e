"""`edgetune-runtime bench`: one mergeable JSON result per device, measured on real labelled texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import write_csv
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bench import SCHEMA, SCHEMA_VERSION, BenchConfig, bench, format_table
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import InputError
from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("bench_bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=4))
    return output


def _rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_bench_measures_every_setting_and_scores_like_predict(bundle_dir, small_banking77):
    config = BenchConfig(data=str(small_banking77["test"]), threads=(1, 2), batch_sizes=(1, 4), warmup=2,
                         cold_starts=1)
    result = bench(bundle_dir, config, command=["test"])
    payload = json.loads(json.dumps(result.to_dict()))  # what lands on disk
    assert payload["schema"] == SCHEMA and payload["schema_version"] == SCHEMA_VERSION
    assert payload["command"] == ["test"]
    device = payload["device"]
    assert device["logical_cores"] >= 1 and device["onnxruntime"] and device["execution_provider"] == \
        "CPUExecutionProvider" and isinstance(device["isa_flags"], list) and device["os"]
    bundle = payload["bundle"]
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert bundle["model_sha256"] == manifest["files"]["model.onnx"] and bundle["size_mb"] > 0
    assert bundle["task"] == "text-classification" and bundle["name"] == "tiny"

    rows = _rows(small_banking77["test"])
    assert payload["data"]["texts"] == len(rows)
    assert [(run["threads"], run["batch_size"]) for run in payload["runs"]] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    texts, loaded = [row["text"] for row in rows], Bundle.load(bundle_dir)
    predicted = [top[0].label for start in range(0, len(texts), 4) for top in loaded.predict(texts[start:start + 4])]
    expected = [row["category"] for row in rows]
    one_by_one = [loaded.predict([text])[0][0].label for text in texts]
    for run in payload["runs"]:
        # Every figure of a run comes from that run's own predictions (batch 1: one text per call).
        own = one_by_one if run["batch_size"] == 1 else predicted
        assert run["per_class_f1"] == {label: round(f1, 4) for label, f1 in per_class_f1(expected, own).items()}
        assert run["accuracy"] == round(accuracy(expected, own), 4)
        assert run["macro_f1"] == round(macro_f1(expected, own), 4)
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"] and run["throughput_texts_per_s"] > 0
        assert run["load_s"] > 0
        if run["batch_size"] == 1:
            assert 0 < run["raw_ort_p50_ms"] < run["p50_ms"] + run["p99_ms"]
            assert run["overhead_fraction"] == round(run["overhead_ms"] / run["p50_ms"], 4)
        else:
            assert run["raw_ort_p50_ms"] is None and run["overhead_ms"] is None
            # Batches in file order of 4: the same batches as the independent predict above.
            assert run["accuracy"] == round(accuracy(expected, predicted), 4)
            assert run["macro_f1"] == round(macro_f1(expected, predicted), 4)
    cold = payload["cold_start"]
    assert 0 < cold["import_s"] < cold["median_s"] < 60 and cold["peak_rss_mb"] > 10
    assert payload["peak_rss_mb"] > 10
    table = format_table(result)
    assert "p50 ms" in table and "cold start" in table and "vs raw onnxruntime" in table


def test_scores_follow_scikit_learn_conventions():
    expected, predicted = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert accuracy(expected, predicted) == 0.5
    # F1: a = 2/3, b = 2/4, c = 0 (never predicted) -> mean 0.3889, as sklearn's f1_score(average="macro").
    assert macro_f1(expected, predicted) == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_bench_refuses_unknown_labels_and_bad_settings(bundle_dir, tmp_path, small_banking77):
    rows = _rows(small_banking77["test"])[:3] + [{"text": "where is my money", "category": "not_a_label"}]
    path = write_csv(tmp_path / "labelled.csv", rows)
    with pytest.raises(InputError, match=r"labelled.csv, row 4: label 'not_a_label' is not one of the bundle's"):
        bench(bundle_dir, BenchConfig(data=str(path), cold_starts=0))
    unlabelled = write_csv(tmp_path / "texts.csv", [{"text": row["text"]} for row in rows], fieldnames=("text",))
    with pytest.raises(InputError, match="cannot tell which column holds the label; columns are text"):
        bench(bundle_dir, BenchConfig(data=str(unlabelled), cold_starts=0))
    with pytest.raises(InputError, match="--batch-sizes: 0: every value must be a whole number >= 1"):
        BenchConfig(data=str(path), batch_sizes=(0,))
    with pytest.raises(InputError, match="--pin-cores"):
        bench(bundle_dir, BenchConfig(data=str(small_banking77["test"]), pin_cores=(4096,), cold_starts=0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core pinning needs Linux")
def test_pinning_applies_during_the_bench_and_is_undone(bundle_dir, small_banking77):
    before = os.sched_getaffinity(0)
    result = bench(bundle_dir, BenchConfig(data=str(small_banking77["test"]), batch_sizes=(1,), limit=5, warmup=0,
                                           cold_starts=0, pin_cores=(min(before),)))
    assert os.sched_getaffinity(0) == before and result.runs[0].p50_ms > 0 and result.cold_start is None


def test_cli_bench_prints_a_table_and_writes_the_json(bundle_dir, small_banking77, tmp_path):
    output = tmp_path / "results" / "tiny.json"
    code = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
            "from edgetune_runtime.cli import main; sys.argv = ['edgetune-runtime', *sys.argv[1:]]; main()")
    done = subprocess.run([sys.executable, "-c", code, "bench", str(bundle_dir), "--data", str(small_banking77["test"]),
                           "--threads", "1", "--batch-sizes", "1,8", "--limit", "10", "--warmup", "1",
                           "--cold-starts", "1", "-o", str(output)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:4] == ["threads", "batch", "p50", "ms"]
    payload = json.loads(output.read_text())
    assert payload["command"][:2] == ["edgetune-runtime", "bench"] and len(payload["runs"]) == 2
    assert payload["data"]["texts"] == 10
    bad = subprocess.run([sys.executable, "-c", code, "bench", str(bundle_dir), "--data", str(small_banking77["test"]),
                          "--threads", "one"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected whole numbers separated by commas" in bad.stderr
