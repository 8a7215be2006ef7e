"""`edgetune tune` end to end on the tiny BERT: a 3-trial study, its front and bundle, the test split unread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_csv
from edgetune.configuration import build_config
from edgetune.data.config import DataConfig
from edgetune.tune.config import TuneConfig
from tune_helpers import tiny_tune_values


@pytest.fixture(scope="module")
def three_trial_study(tmp_path_factory, tiny_bert_dir, small_banking77):
    from edgetune.tune.search import tune

    run_dir = tmp_path_factory.mktemp("tune") / "run"
    # A test split that does not exist: reading it anywhere in the search would fail the run.
    unread_test = run_dir.parent / "never-read-test.csv"
    values = tiny_tune_values(tiny_bert_dir, 3, pick="most-accurate")
    values["space"]["int8_variant"] = {"type": "categorical", "choices": ["dynamic-int8", "dynamic-int8-per-channel"]}
    config = build_config(TuneConfig, values, "tune")
    result = tune(DataConfig(train=str(small_banking77["train"]), test=str(unread_test)), config, run_dir)
    return result, run_dir, unread_test


def test_three_trials_measured_and_the_front_written(three_trial_study):
    result, run_dir, _ = three_trial_study
    assert [row["state"] for row in result.trials] == ["complete"] * 3
    for row in result.trials:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["p50_ms"] > 0 and row["size_mb"] > 0
        assert set(row["params"]) == {"learning_rate", "label_smoothing", "int8_variant"}
        assert 1e-3 <= row["params"]["learning_rate"] <= 5e-3
    assert any(row["on_front"] for row in result.trials)
    recorded = json.loads((run_dir / "trials.json").read_text())
    assert recorded["chosen"] == result.chosen["number"]
    assert result.chosen["accuracy"] == max(row["accuracy"] for row in result.trials)
    assert (run_dir / "front.png").read_bytes()[:4] == b"\x89PNG"
    page = (run_dir / "front.html").read_text()
    assert "data:image/png;base64," in page and page.count("<tr") == 4 and "class='chosen'" in page
    assert (run_dir / "study.db").is_file()


def test_the_chosen_bundle_loads_and_predicts_in_the_runtime(three_trial_study):
    from edgetune_runtime.bundle import Bundle

    result, _, _ = three_trial_study
    bundle = Bundle.load(result.files["bundle"])
    assert bundle.predict(["I lost my card"])[0][0].label in bundle.labels
    manifest = json.loads((result.files["int8"] / "edgetune.json").read_text())
    assert manifest["stage"] == "quantize"
    # the int8 graph is the variant the chosen trial drew, not a fixed one
    report = json.loads((result.files["int8"] / "quantize_report.json").read_text())
    assert report["chosen"] == result.chosen["params"]["int8_variant"]
    assert set(report["variants"]) == {"fp32", report["chosen"]}


def test_the_test_split_is_never_read(three_trial_study):
    result, _, unread_test = three_trial_study
    assert not unread_test.exists()  # the search finished although its test file was never there
    manifest = json.loads((result.files["model"] / "edgetune.json").read_text())
    assert manifest["data"]["config"]["test"] is None and "test" not in manifest["data"]["splits"]
    assert "test" not in json.loads((result.files["model"] / "metrics.json").read_text())


def test_a_resumed_study_with_another_space_is_refused(three_trial_study, tiny_bert_dir, small_banking77):
    from edgetune.errors import EdgetuneError
    from edgetune.tune.search import tune

    _, run_dir, _ = three_trial_study
    values = tiny_tune_values(tiny_bert_dir, 4)
    values["space"]["warmup_ratio"] = {"type": "float", "low": 0.0, "high": 0.1}
    with pytest.raises(EdgetuneError, match="its space differs from this run's"):
        tune(DataConfig(train=str(small_banking77["train"])), build_config(TuneConfig, values, "tune"), run_dir)


def test_single_mode_records_epochs_and_respects_the_latency_constraint(tmp_path, tiny_bert_dir, small_banking77):
    from edgetune.tune.search import tune

    values = tiny_tune_values(tiny_bert_dir, 2, mode="single", max_latency_ms=1000.0,
                              pick="most-accurate-under 1000ms")
    result = tune(DataConfig(train=str(small_banking77["train"])), build_config(TuneConfig, values, "tune"),
                  tmp_path / "run")
    assert [row["state"] for row in result.trials] == ["complete", "complete"]
    assert all(row["feasible"] and len(row["epoch_metric"]) == 1 for row in result.trials)
    assert result.chosen["p50_ms"] <= 1000.0


def test_settings_drawn_twice_are_trained_once(tmp_path, tiny_bert_dir, small_banking77):
    from edgetune.tune.search import tune

    values = tiny_tune_values(tiny_bert_dir, 2, keep_trials=True)
    values["space"] = {"learning_rate": {"type": "categorical", "choices": [2e-3]}}  # trial 1 must draw trial 0's
    result = tune(DataConfig(train=str(small_banking77["train"])), build_config(TuneConfig, values, "tune"),
                  tmp_path / "run")
    first, second = result.trials
    assert first["repeat_of"] is None and second["repeat_of"] == 0 and second["state"] == "complete"
    assert (second["accuracy"], second["p50_ms"], second["directory"]) == \
        (first["accuracy"], first["p50_ms"], first["directory"])
    assert (tmp_path / "run" / "trials" / "0000").is_dir() and not (tmp_path / "run" / "trials" / "0001").exists()
    assert "<td>complete (repeat of 0)</td>" in (tmp_path / "run" / "front.html").read_text()


def test_rows_file_written_is_what_trials_json_holds(three_trial_study):
    result, run_dir, _ = three_trial_study
    assert json.loads((run_dir / "trials.json").read_text())["trials"] == json.loads(json.dumps(result.trials))


def write_small(tmp_path: Path, rows) -> Path:
    return write_csv(tmp_path / "train.csv", rows)


def tune_recipe(tmp_path: Path, tiny_bert_dir: Path, train: Path, space: str) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(f"""
name: tiny-tune
description: a two-trial search, then the normal stages on the chosen model
data:
  train: {train}
stages:
  tune:
    base: {{model: {tiny_bert_dir}, epochs: 1, batch_size: 16, early_stopping_patience: 0, max_length: 32}}
    space:
{space}
    trials: 2
    latency_texts: 8
    pick: fastest-within 5
  export: {{}}
  quantize: {{variants: [dynamic-int8]}}
  bundle: {{golden_examples: 4}}
""", encoding="utf-8")
    return path


def test_a_recipe_tune_stage_is_validated_like_the_others(tmp_path, tiny_bert_dir, small_banking77):
    from edgetune.errors import ConfigError
    from edgetune.recipes.check import check_recipe
    from edgetune.recipes.load import load_recipe

    bad = tune_recipe(tmp_path, tiny_bert_dir, small_banking77["train"],
                      "      lr: {type: float, low: 0.001, high: 0.005, log: true}")
    with pytest.raises(ConfigError, match=r"stages\.tune\.space\.lr: not a searchable setting"):
        check_recipe(load_recipe(bad))


@pytest.mark.slow
def test_a_recipe_runs_tune_then_bundles_the_chosen_model(tmp_path, tiny_bert_dir, small_banking77):
    from edgetune.recipes.load import load_recipe
    from edgetune.recipes.runner import run_recipe
    from edgetune_runtime.bundle import Bundle

    recipe = tune_recipe(tmp_path, tiny_bert_dir, small_banking77["train"],
                         "      learning_rate: {type: float, low: 0.001, high: 0.005, log: true}")
    result = run_recipe(load_recipe(recipe), tmp_path / "run")
    tuned = result.output_of("tune")
    assert (tuned / "edgetune.json").is_file() and (tuned / "tune" / "front.html").is_file()
    trials = json.loads((tuned / "tune" / "trials.json").read_text())
    assert len(trials["trials"]) == 2
    assert Bundle.load(result.output_of("bundle")).predict(["card declined"])[0][0].label


def test_a_missing_transfer_text_is_refused_before_the_run_directory_exists(tmp_path, tiny_bert_dir,
                                                                            small_banking77):
    from edgetune.errors import DataError
    from edgetune.tune.search import tune

    values = tiny_tune_values(tiny_bert_dir, 2, teacher=str(tmp_path), transfer_text=str(tmp_path / "absent.txt"))
    with pytest.raises(DataError, match=r"transfer text .*absent.txt: file not found"):
        tune(DataConfig(train=str(small_banking77["train"])), build_config(TuneConfig, values, "tune"),
             tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_study_joined_with_other_transfer_text_is_refused(tmp_path, tiny_bert_dir):
    import optuna

    from edgetune.errors import EdgetuneError
    from edgetune.tune.search import _check_same_search

    study = optuna.create_study(directions=["maximize", "minimize"])  # a real in-memory Optuna study
    with_transfer = tiny_tune_values(tiny_bert_dir, 2, teacher=str(tmp_path), transfer_text="more.txt")
    _check_same_search(study, build_config(TuneConfig, with_transfer, "tune"))
    _check_same_search(study, build_config(TuneConfig, with_transfer, "tune"))  # the same search joins
    without = {key: value for key, value in with_transfer.items() if key != "transfer_text"}
    with pytest.raises(EdgetuneError, match="its transfer_text differs from this run's"):
        _check_same_search(study, build_config(TuneConfig, without, "tune"))
