"""Portable models: export, quantize and bundle work on models edgetune did not train, and on another machine.

A foreign model (an `optimum-cli export onnx` directory, a checkpoint from elsewhere) records no
data; a model trained here records absolute paths that another machine lacks. Both take held-out
and calibration data as files (`validation`, `calibration`, with the column options of finetune),
and the errors name flags that exist.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import REPO_ROOT, banking77_subset, write_csv
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.errors import EdgetuneError
from edgetune.export.config import ExportConfig
from edgetune.export.onnx_export import export_onnx
from edgetune.quantize.config import QuantizeConfig
from edgetune.quantize.run import quantize
from edgetune_runtime.bundle import Bundle


@pytest.fixture(scope="module")
def optimum_dir(tmp_path_factory, tiny_finetuned_dir) -> Path:
    """What `optimum-cli export onnx --task text-classification` writes: no edgetune.json at all."""
    from optimum.exporters.onnx import main_export

    output = tmp_path_factory.mktemp("optimum") / "onnx"
    main_export(str(tiny_finetuned_dir), output, task="text-classification", do_validation=False,
                library_name="transformers", local_files_only=True)
    assert not (output / "edgetune.json").exists() and (output / "model.onnx").is_file()
    return output


def _renamed(path: Path, split: str, per_class: int) -> Path:
    rows = [{"said": row["text"], "meant": row["category"]} for row in banking77_subset(split, 4, per_class)]
    return write_csv(path, rows, ("said", "meant"))


@pytest.fixture(scope="module")
def renamed_columns(tmp_path_factory) -> Path:
    """Held-out rows under column names no detector guesses, so only the column options find them."""
    return _renamed(tmp_path_factory.mktemp("columns") / "heldout.csv", "test", 8)


def test_an_optimum_cli_export_is_quantised_bundled_and_verified(optimum_dir, small_banking77, tmp_path):
    validation = str(small_banking77["test"])
    report = quantize(optimum_dir, tmp_path / "q", QuantizeConfig(validation=validation, latency_texts=10,
                                                                   variants=("fp32", "dynamic-int8"),
                                                                   max_accuracy_drop=100.0, keep="dynamic-int8"))
    assert report["chosen"] == "dynamic-int8" and report["evaluated_on"] == validation
    manifest = json.loads((tmp_path / "q" / "edgetune.json").read_text())
    model_config = json.loads((optimum_dir / "config.json").read_text())
    assert manifest["task"] == "text-classification"
    assert manifest["labels"] == [model_config["id2label"][str(i)] for i in range(4)]
    assert manifest["source"]["data"] is None and manifest["max_length"] == 128  # the tokenizer's own limit

    result = build_bundle(tmp_path / "q", tmp_path / "bundle", BundleConfig(validation=validation,
                                                                            golden_examples=8))
    bundle = Bundle.load(result.directory)
    assert bundle.verify().passed and bundle.labels == manifest["labels"]
    assert result.manifest["tuned_for"]["variant"] == "dynamic-int8"

    # The optimum directory itself bundles too, without a quantize step.
    direct = build_bundle(optimum_dir, tmp_path / "direct", BundleConfig(validation=validation, golden_examples=4))
    assert Bundle.load(direct.directory).verify().passed
    assert direct.manifest["provenance"]["source_manifest_sha256"] is None


def test_a_foreign_export_without_held_out_data_names_the_flag(optimum_dir, tmp_path):
    for stage in (lambda: quantize(optimum_dir, tmp_path / "q", QuantizeConfig(variants=("fp32",))),
                  lambda: build_bundle(optimum_dir, tmp_path / "b", BundleConfig())):
        with pytest.raises(EdgetuneError, match="records no training data .*; pass --validation FILE") as error:
            stage()
        assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_recorded_data_missing_on_this_machine_is_replaced_by_given_files(tiny_export_dir, renamed_columns,
                                                                          tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_export_dir, moved)
    manifest = json.loads((moved / "edgetune.json").read_text())
    manifest["source"]["data"]["config"]["train"] = "/elsewhere/train.csv"  # as on the machine that trained it
    (moved / "edgetune.json").write_text(json.dumps(manifest))

    with pytest.raises(EdgetuneError, match="records its train data at /elsewhere/train.csv, which is not on this "
                                            "machine; pass --validation FILE"):
        quantize(moved, tmp_path / "q", QuantizeConfig(variants=("fp32",)))
    columns = {"text_column": "said", "label_column": "meant"}
    with pytest.raises(EdgetuneError, match="static variants \\(static-qdq-minmax\\) need calibration text: pass "
                                            "--calibration FILE"):
        quantize(moved, tmp_path / "q", QuantizeConfig(variants=("static-qdq-minmax",),
                                                       validation=str(renamed_columns), **columns))
    assert not (tmp_path / "q").exists()

    report = quantize(moved, tmp_path / "q", QuantizeConfig(
        variants=("static-qdq-minmax",), validation=str(renamed_columns),
        calibration=str(_renamed(tmp_path / "calibration.csv", "train", 10)), latency_texts=10,
        calibration_samples=20, max_accuracy_drop=100.0, keep="static-qdq-minmax", **columns))
    assert report["chosen"] == "static-qdq-minmax" and report["evaluated_on"] == str(renamed_columns)
    assert report["variants"]["fp32"]["test"] is None  # the recorded test split is not here to report
    result = build_bundle(tmp_path / "q", tmp_path / "b", BundleConfig(validation=str(renamed_columns), **columns))
    assert Bundle.load(result.directory).verify().passed


def test_columns_that_cannot_be_found_name_the_column_flag(tiny_export_dir, renamed_columns, tmp_path):
    with pytest.raises(EdgetuneError, match="cannot tell which column holds the text; .* - pass --text-column"):
        quantize(tiny_export_dir, tmp_path / "q", QuantizeConfig(variants=("fp32",), validation=str(renamed_columns)))


def test_held_out_labels_the_model_lacks_are_refused_with_the_row(tiny_export_dir, tmp_path):
    wrong = write_csv(tmp_path / "wrong.csv", [{"text": "where is my card", "category": "not_an_intent"}])
    with pytest.raises(EdgetuneError, match="wrong.csv, row 1: label 'not_an_intent' is not one of the model's"):
        quantize(tiny_export_dir, tmp_path / "q", QuantizeConfig(variants=("fp32",), validation=str(wrong)))


def test_export_takes_a_model_edgetune_did_not_train(tiny_bert_dir, small_banking77, tmp_path):
    with pytest.raises(EdgetuneError, match="records no training data .*; pass --validation FILE"):
        export_onnx(tiny_bert_dir, tmp_path / "none", ExportConfig(optimize=False))
    result = export_onnx(tiny_bert_dir, tmp_path / "onnx", ExportConfig(validation=str(small_banking77["test"]),
                                                                        optimize=False, parity_texts=16))
    assert result.parity.passed and result.parity.texts_compared == 16
    manifest = json.loads((tmp_path / "onnx" / "edgetune.json").read_text())
    assert manifest["task"] == "text-classification" and manifest["source"]["data"] is None
    assert manifest["source"]["base_model"]["name"] == str(tiny_bert_dir)
    assert manifest["source"]["base_model"]["source"] == "local path"


def test_a_directory_that_is_no_model_is_refused_before_resolving(tmp_path):
    with pytest.raises(EdgetuneError, match="not a model directory \\(no config.json\\)"):
        export_onnx(tmp_path, tmp_path / "out", ExportConfig())


def test_error_messages_name_only_flags_that_exist():
    """Every `--flag` the export, quantize and bundle stages put in an error is a field of their configs
    (the CLI's flags are generated from those) or --force; no stage names --texts any more."""
    known = {"force"} | {field.name for config in (ExportConfig, QuantizeConfig, BundleConfig)
                         for field in fields(config)}
    sources = [REPO_ROOT / "toolchain" / "edgetune" / path for path in (
        "export/onnx_export.py", "export/heldout.py", "export/artifact.py", "quantize/run.py", "bundle/build.py",
        "tasks/__init__.py", "tasks/task.py", "tasks/classification.py", "data/load.py")]
    named = {flag for path in sources for flag in re.findall(r"--([a-z][a-z0-9-]*)\b", path.read_text())}
    assert named, "the scan found no flags at all"
    assert {flag.replace("-", "_") for flag in named} <= known, named
    assert "texts" not in named
