"""Hardening round 2, the toolchain's outputs: modes follow the umask, and a full disk leaves no temporary file.

* `bundle --zip`: the archive and every file of the bundle are created with the umask's permissions
  (main's issue report: bundle.zip was 0600 while other outputs followed the umask).
* A file-size limit that lets every file of the bundle through but not its zip (RLIMIT_FSIZE, SIGXFSZ
  ignored so the write fails with EFBIG) gives one error line, no bundle, no zip and no temporary file.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edgetune.cli.main import cli

EDGETUNE = [sys.executable, "-m", "edgetune"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bundle_and_its_zip_follow_the_umask(tmp_path, tiny_export_dir):
    output = tmp_path / "bundle"
    previous = os.umask(0o027)
    try:
        result = CliRunner().invoke(cli, ["bundle", str(tiny_export_dir), str(output), "--zip",
                                          "--golden-examples", "2"])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert _mode(tmp_path / "bundle.zip") == 0o640
    assert _mode(output) == 0o750
    assert {path.name: _mode(path) for path in output.iterdir()} == {path.name: 0o640 for path in output.iterdir()}


def test_a_zip_past_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path, tiny_export_dir):
    # With --ort the zip holds the graph twice (model.onnx and model.ort), so it outgrows every single file.
    arguments = ["--zip", "--ort", "--golden-examples", "2"]
    reference = tmp_path / "reference"
    assert CliRunner().invoke(cli, ["bundle", str(tiny_export_dir), str(reference), *arguments]).exit_code == 0
    largest_file = max(path.stat().st_size for path in reference.iterdir())
    zip_size = (tmp_path / "reference.zip").stat().st_size
    assert zip_size > largest_file + 1024, "the zip must be the one file over the limit"
    limit = (largest_file + zip_size) // 2

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([*EDGETUNE, "bundle", str(tiny_export_dir), str(work / "bundle"), *arguments],
                            capture_output=True, text=True, timeout=600, preexec_fn=limited)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "file-size limit" in lines[0] and "nothing was written to the output path" in lines[0], lines[0]
    assert list(work.iterdir()) == [], "no bundle, no zip, no staging folder and no .tmp file"
