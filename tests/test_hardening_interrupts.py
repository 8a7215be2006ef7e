"""Hardening, interrupted work: a killed or starved process loses nothing and leaves nothing half-written.

* `edgetune finetune` killed with SIGKILL mid-epoch (and with a checkpoint left half-written, as a
  kill during a save leaves it) resumes with `--resume` and ends where an uninterrupted run of the
  same seed ends: identical metrics and confusion matrices, weights within 1e-5 absolute / 1e-4
  relative (float summation order is the only allowed difference).
* `export`, `quantize` and `bundle` killed with SIGKILL while they work leave nothing at the
  destination, and a rerun succeeds.
* A full disk, simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored so writes fail with
  EFBIG) and, where this machine lets us mount one, a 64 KiB tmpfs (ENOSPC), gives one `error:` line,
  exit status 2 and no output.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from edgetune.cli.main import cli

EDGETUNE = [sys.executable, "-m", "edgetune"]
WEIGHT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
FILE_SIZE_LIMIT_BYTES = 48 * 1024  # below every model file of the tiny pipeline, above its JSON files


def _finetune_arguments(tiny_bert_dir: Path, data: dict[str, Path], output: Path) -> list[str]:
    # 88 training rows in batches of 8: 11 steps an epoch, a checkpoint every 3 steps, no early stop.
    return ["finetune", "--model", str(tiny_bert_dir), "--train", str(data["train"]), "--test", str(data["test"]),
            "-o", str(output), "--epochs", "2", "--batch-size", "8", "--lr", "2e-3", "--eval-steps", "3",
            "--patience", "0", "--logging-steps", "5", "--seed", "7"]


def _kill_when(command: list[str], ready: Callable[[], bool], timeout_s: float = 300,
               env: dict | None = None) -> subprocess.Popen:
    """Start `command`, SIGKILL its whole process group the moment `ready()` holds; fail if it ends first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                               env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            assert process.returncode == -signal.SIGKILL
            return process
        if process.poll() is not None:
            pytest.fail(f"{command[3]} ended (status {process.returncode}) before the moment to kill it: "
                        f"{process.stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"{command[3]} never reached the moment to kill it")


def _complete_checkpoints(checkpoints: Path) -> list[int]:
    """Checkpoints whose trainer state (written last) is already whole, so killing now keeps them."""
    complete = []
    for path in checkpoints.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        complete.append(int(path.name.split("-")[1]))
    return sorted(complete)


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(tmp_path, tiny_bert_dir, small_banking77):
    straight = tmp_path / "straight"
    result = CliRunner().invoke(cli, _finetune_arguments(tiny_bert_dir, small_banking77, straight))
    assert result.exit_code == 0, result.output

    killed = tmp_path / "killed"
    checkpoints = tmp_path / ".killed.work" / "checkpoints"
    # Step 3 of an 11-step epoch: mid-epoch, with one complete checkpoint to resume from.
    _kill_when([*EDGETUNE, *_finetune_arguments(tiny_bert_dir, small_banking77, killed)],
               lambda: bool(_complete_checkpoints(checkpoints)))
    assert not killed.exists(), "a killed run leaves nothing at the destination"
    last = max(_complete_checkpoints(checkpoints))
    assert last < 11, "killed within the first epoch"

    # A kill during a save leaves a newer checkpoint without its trainer state: resume must skip it.
    newest = max(int(path.name.split("-")[1]) for path in checkpoints.glob("checkpoint-*"))
    partial = checkpoints / f"checkpoint-{newest + 3}"
    shutil.copytree(checkpoints / f"checkpoint-{last}", partial)
    (partial / "trainer_state.json").unlink()
    with open(partial / "model.safetensors", "r+b") as weights:
        weights.truncate(100)

    refused = CliRunner().invoke(cli, _finetune_arguments(tiny_bert_dir, small_banking77, killed))
    assert refused.exit_code == 2 and "pass --resume to continue it" in refused.stderr

    resumed = subprocess.run([*EDGETUNE, *_finetune_arguments(tiny_bert_dir, small_banking77, killed), "--resume"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert not (tmp_path / ".killed.work").exists(), "checkpoints are removed once the run completes"

    straight_metrics = json.loads((straight / "metrics.json").read_text())
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert resumed_metrics[split]["accuracy"] == straight_metrics[split]["accuracy"], split
        assert resumed_metrics[split]["confusion_matrix"] == straight_metrics[split]["confusion_matrix"], split
    assert resumed_metrics["test"]["macro_f1"] == pytest.approx(straight_metrics["test"]["macro_f1"], abs=1e-9)
    straight_training = json.loads((straight / "edgetune.json").read_text())["training"]
    resumed_training = json.loads((killed / "edgetune.json").read_text())["training"]
    assert resumed_training["steps"] == straight_training["steps"] == 22
    assert resumed_training["best_step"] == straight_training["best_step"]
    straight_weights = load_file(straight / "model.safetensors")
    resumed_weights = load_file(killed / "model.safetensors")
    assert straight_weights.keys() == resumed_weights.keys()
    for name, tensor in straight_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, **WEIGHT_TOLERANCE, msg=name)


def _staging_started(parent: Path, name: str) -> Callable[[], bool]:
    """True once the stage's hidden staging directory beside the destination holds a file."""
    return lambda: any(any(staging.iterdir()) for staging in parent.glob(f".{name}.tmp-*") if staging.is_dir())


def _assert_nothing_at(destination: Path) -> None:
    assert not destination.exists(), f"{destination} exists after a kill"
    assert not destination.with_suffix(".zip").exists()


def _staging_left(destination: Path) -> list[Path]:
    return list(destination.parent.glob(f".{destination.name}.tmp-*"))


def test_sigkill_during_export_leaves_nothing_and_a_rerun_succeeds(tmp_path, tiny_finetuned_dir):
    destination = tmp_path / "onnx"
    _kill_when([*EDGETUNE, "export", str(tiny_finetuned_dir), str(destination)],
               _staging_started(tmp_path, destination.name))
    _assert_nothing_at(destination)
    assert _staging_left(destination), "the kill landed while the stage was writing"
    rerun = CliRunner().invoke(cli, ["export", str(tiny_finetuned_dir), str(destination), "--no-optimize"])
    assert rerun.exit_code == 0, rerun.output
    assert not _staging_left(destination), "the rerun cleans up the killed run's staging folder"
    assert (destination / "model.onnx").is_file()


def test_sigkill_during_quantisation_leaves_nothing_and_a_rerun_succeeds(tmp_path, tiny_export_dir):
    destination = tmp_path / "int8"
    scratch = tmp_path / "scratch"  # the quantiser builds its variants in a temporary folder under TMPDIR
    scratch.mkdir()
    arguments = ["quantize", str(tiny_export_dir), str(destination), "--variant", "dynamic-int8",
                 "--latency-texts", "5", "--max-accuracy-drop", "100"]
    process = _kill_when([*EDGETUNE, *arguments], lambda: any(scratch.glob("edgetune-quantize-*/*.onnx")),
                         env=os.environ | {"TMPDIR": str(scratch)})
    assert process.returncode == -signal.SIGKILL
    _assert_nothing_at(destination)
    rerun = CliRunner().invoke(cli, arguments)
    assert rerun.exit_code == 0, rerun.output
    assert (destination / "quantize_report.json").is_file()


def test_sigkill_while_bundling_leaves_nothing_and_a_rerun_succeeds(tmp_path, tiny_export_dir):
    destination = tmp_path / "bundle"
    arguments = ["bundle", str(tiny_export_dir), str(destination), "--zip", "--ort", "--golden-examples", "4"]
    # The ORT conversion runs inside the staging phase, so the kill lands mid-bundle.
    _kill_when([*EDGETUNE, *arguments], _staging_started(tmp_path, destination.name))
    _assert_nothing_at(destination)
    assert _staging_left(destination), "the kill landed while the stage was writing"
    rerun = CliRunner().invoke(cli, arguments)
    assert rerun.exit_code == 0, rerun.output
    assert (destination / "manifest.json").is_file() and destination.with_suffix(".zip").is_file()
    assert not _staging_left(destination), "the rerun cleans up the killed run's staging folder"


def _with_file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT_BYTES, FILE_SIZE_LIMIT_BYTES))


def _assert_storage_error(result: subprocess.CompletedProcess, destination: Path) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert ("file-size limit" in errors[0] or "could not be written in full" in errors[0]) \
        and "nothing was written to the output path" in errors[0], errors[0]
    _assert_nothing_at(destination)
    assert not list(destination.parent.glob(f".{destination.name}.tmp-*")), "staging left behind"


@pytest.mark.parametrize("stage", ["finetune", "export", "quantize", "bundle"])
def test_full_disk_is_one_line_and_no_output(tmp_path, stage, tiny_bert_dir, small_banking77, tiny_finetuned_dir,
                                             tiny_export_dir):
    destination = tmp_path / "out"
    arguments = {
        "finetune": _finetune_arguments(tiny_bert_dir, small_banking77, destination),
        "export": ["export", str(tiny_finetuned_dir), str(destination)],
        "quantize": ["quantize", str(tiny_export_dir), str(destination), "--variant", "dynamic-int8",
                     "--latency-texts", "5", "--max-accuracy-drop", "100"],
        "bundle": ["bundle", str(tiny_export_dir), str(destination), "--zip"],
    }[stage]
    result = subprocess.run([*EDGETUNE, *arguments], capture_output=True, text=True, timeout=600,
                            preexec_fn=_with_file_size_limit)
    _assert_storage_error(result, destination)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 64 KiB tmpfs, where this machine allows mounting one (root in a privileged container)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True) if shutil.which("mount") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the file-size-limit tests cover a full disk")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_really_full_disk_is_one_line_and_no_output(tiny_filesystem, tiny_export_dir, small_banking77):
    runner = CliRunner()
    destination = tiny_filesystem / "bundle"
    result = runner.invoke(cli, ["bundle", str(tiny_export_dir), str(destination), "--no-ort"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the device while writing"), lines
    _assert_nothing_at(destination)
    assert not list(tiny_filesystem.iterdir()), "staging left behind on the full disk"

    with open(tiny_filesystem / "ballast", "wb", buffering=0) as ballast, pytest.raises(OSError):
        while True:  # fill the disk to the last block
            ballast.write(b"\0" * 1024)
    report = tiny_filesystem / "report.json"
    result = runner.invoke(cli, ["data", "inspect", "--train", str(small_banking77["train"]), "--report", str(report)])
    assert result.exit_code == 2 and "no space left on the device" in result.stderr, result.output
    assert not report.exists() and [path.name for path in tiny_filesystem.iterdir()] == ["ballast"]


def test_a_rerun_removes_only_staging_folders_whose_writer_is_gone(tmp_path):
    from edgetune.atomic import atomic_directory

    killed_writer = tmp_path / ".out.tmp-2147483646-abcd"  # no such process
    live_writer = tmp_path / f".out.tmp-{os.getpid()}-efgh"  # this very process: still writing
    unknown = tmp_path / ".out.tmp-legacyname"  # no pid in the name: never touched
    for folder in (killed_writer, live_writer, unknown):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "done.txt").write_text("done")
    assert not killed_writer.exists() and live_writer.is_dir() and unknown.is_dir()
    assert (tmp_path / "out" / "done.txt").is_file()
