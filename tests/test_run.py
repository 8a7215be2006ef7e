"""`edgetune run` on a tiny real pipeline: finetune -> export -> quantize -> bundle -> bench -> report.

A second run does no work; a run stopped between stages, or killed in the middle of one, resumes
at the stage it was in and never re-runs the finished ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetune.recipes.load import load_recipe
from edgetune.recipes.runner import run_recipe

STAGE_ORDER = ["finetune", "export", "quantize", "bundle", "bench"]


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory, tiny_bert_dir, small_banking77) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(f"""
name: tiny
description: the tiny BERT through every stage
data:
  train: {small_banking77['train']}
  test: {small_banking77['test']}
stages:
  finetune:
    model: {tiny_bert_dir}
    epochs: 2
    learning_rate: 0.003
    batch_size: 8
    early_stopping_patience: null
  export:
    parity_texts: 8
  quantize:
    variants: [dynamic-int8]
    calibration_samples: 16
    latency_texts: 16
  bundle:
    golden_examples: 4
  bench:
    batch_sizes: [1, 8]
    warmup: 2
    cold_starts: 0
report:
  threads: 1
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_run(tiny_recipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_recipe(load_recipe(tiny_recipe), run_dir)


def _stage_dirs(run_dir: Path) -> dict[str, Path]:
    return {path.name.rsplit("-", 1)[0]: path for path in (run_dir / "stages").iterdir() if path.is_dir()}


def test_a_run_writes_every_stage_a_log_and_the_report(first_run):
    assert first_run.complete
    assert [(r.name, r.status) for r in first_run.stages] == [(name, "ran") for name in STAGE_ORDER]
    run_dir = first_run.run_dir
    assert set(_stage_dirs(run_dir)) == set(STAGE_ORDER)
    assert (first_run.output_of("bundle") / "manifest.json").is_file()
    assert (run_dir / "latest" / "bundle").resolve() == first_run.output_of("bundle")
    assert (first_run.output_of("bench") / "bench.json").is_file()
    log = (run_dir / "run.log").read_text()
    assert "[1/5] finetune (finetune): running" in log and "summary" in log
    report = (run_dir / "report.md").read_text()
    assert "| finetune | PyTorch | fp32 |" in report  # the fp32 baseline, timed on the same texts
    assert "| bundle | edgetune-runtime |" in report and "Quantisation variants tried" in report
    assert (run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()


def test_a_second_run_does_no_work(first_run, tiny_recipe):
    run_dir = first_run.run_dir
    before = {name: path.stat().st_mtime_ns for name, path in _stage_dirs(run_dir).items()}
    baselines = {path: path.stat().st_mtime_ns for path in (run_dir / "baselines").iterdir()}
    log_size = (run_dir / "run.log").stat().st_size

    again = run_recipe(load_recipe(tiny_recipe), run_dir)

    assert [(r.name, r.status) for r in again.stages] == [(name, "cached") for name in STAGE_ORDER]
    assert {name: path.stat().st_mtime_ns for name, path in _stage_dirs(run_dir).items()} == before
    assert {path: path.stat().st_mtime_ns for path in (run_dir / "baselines").iterdir()} == baselines
    new_log = (run_dir / "run.log").read_text()[log_size:]
    assert "running into" not in new_log and new_log.count(": cached in ") == len(STAGE_ORDER)


def test_a_changed_setting_reruns_that_stage_and_what_follows(first_run, tiny_recipe, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(first_run.run_dir, run_dir, symlinks=True)
    changed = run_recipe(load_recipe(tiny_recipe, ["stages.bundle.golden_examples=3"]), run_dir)
    assert [r.status for r in changed.stages] == ["cached", "cached", "cached", "ran", "ran"]


def test_stopped_between_stages_resumes_at_the_next_one(first_run, tiny_recipe, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(first_run.run_dir, run_dir, symlinks=True)
    for name in ("quantize", "bundle", "bench"):  # as if the run had stopped after export
        shutil.rmtree(_stage_dirs(run_dir)[name])
    for report in ("report.md", "report.html", "pareto.png"):
        (run_dir / report).unlink()

    stopped = run_recipe(load_recipe(tiny_recipe), run_dir, stop_after="quantize")
    assert not stopped.complete and [r.status for r in stopped.stages] == ["cached", "cached", "ran"]
    assert not (run_dir / "report.md").exists()

    resumed = run_recipe(load_recipe(tiny_recipe), run_dir)
    assert [r.status for r in resumed.stages] == ["cached", "cached", "cached", "ran", "ran"]
    assert (run_dir / "report.md").is_file()


def test_killed_mid_stage_leaves_nothing_and_resumes_there(first_run, tiny_recipe, tmp_path):
    """SIGKILL while the export stage is writing; the re-run starts again at export, keeps the fine-tune."""
    run_dir = tmp_path / "tiny"
    shutil.copytree(first_run.run_dir, run_dir, symlinks=True)
    finetune_dir = _stage_dirs(run_dir)["finetune"]
    for name in ("export", "quantize", "bundle", "bench"):
        shutil.rmtree(_stage_dirs(run_dir)[name])
    finetune_mtime = finetune_dir.stat().st_mtime_ns

    process = subprocess.Popen([sys.executable, "-m", "edgetune", "run", str(tiny_recipe), "--run-dir", str(run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not list((run_dir / "stages").glob(".export-*.tmp-*")):  # the export stage is writing
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the export stage never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert "export" not in _stage_dirs(run_dir)  # nothing half-written at a final path

    resumed = run_recipe(load_recipe(tiny_recipe), run_dir)
    assert [r.status for r in resumed.stages] == ["cached", "ran", "ran", "ran", "ran"]
    assert finetune_dir.stat().st_mtime_ns == finetune_mtime
    assert not list((run_dir / "stages").glob(".*.tmp-*"))  # the killed stage's staging directory is gone
    assert (run_dir / "report.md").is_file()


def test_run_command_end_to_end_output(first_run, tiny_recipe):
    """The CLI prints the summary table; --stop-after with an unknown stage is a one-line error."""
    result = subprocess.run([sys.executable, "-m", "edgetune", "run", str(tiny_recipe), "--run-dir",
                             str(first_run.run_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "0 of 5 stages ran, 5 cached" in result.stderr and "run complete" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "edgetune", "run", str(tiny_recipe), "--run-dir",
                          str(first_run.run_dir), "--stop-after", "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --stop-after nope: no such stage; the recipe's stages are finetune, export, quantize, bundle, bench"]
