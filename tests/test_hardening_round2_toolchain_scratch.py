"""Hardening round 2: a signalled `edgetune quantize` leaves no scratch directory in the temp dir.

Main's SIGTERM ended the process without unwinding its `with TemporaryDirectory`, leaving 60 MB of
variants each time. The CLI now turns SIGTERM and SIGHUP into an interrupt that unwinds (exit 128 + signal),
and a scratch directory carries its writer's pid so that the next start sweeps those a SIGKILL left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EDGETUNE = [sys.executable, "-m", "edgetune"]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_quantisation_removes_the_scratch_directory(tmp_path, tiny_export_dir, signal_number):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    destination = tmp_path / "int8"
    process = subprocess.Popen([*EDGETUNE, "quantize", str(tiny_export_dir), str(destination), "--variant",
                                "dynamic-int8", "--latency-texts", "5", "--max-accuracy-drop", "100"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=os.environ | {"TMPDIR": str(scratch)})
    deadline = time.monotonic() + 300
    while not any(scratch.glob("edgetune-quantize-*/*.onnx")):  # a variant is being built
        assert process.poll() is None, f"quantize ended before the signal: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "quantize never started building"
        time.sleep(0.01)
    process.send_signal(signal_number)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 128 + signal_number, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted: nothing was written" in stderr, stderr[-2000:]
    # Only edgetune's own scratch counts: a library may leave a small file of its own in TMPDIR (one
    # writes a 51-byte `.ses` session id there at import).
    assert list(scratch.glob("edgetune-*")) == [], "scratch left in the temp dir"
    assert not destination.exists() and not list(tmp_path.glob(".int8.tmp-*"))


def test_the_next_start_sweeps_scratch_left_by_killed_processes_only(tmp_path, monkeypatch):
    import tempfile

    from edgetune.scratch import scratch_directory

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = tmp_path / "edgetune-quantize-2147483646-abcd"  # no such process
    live = tmp_path / f"edgetune-quantize-{os.getpid()}-efgh"  # this very process
    unnamed = tmp_path / "edgetune-quantize-legacy"  # no pid: never touched
    other_purpose = tmp_path / "edgetune-pull-2147483646-abcd"
    for folder in (killed, live, unnamed, other_purpose):
        folder.mkdir()
        (folder / "variant.onnx").write_bytes(b"60 MB")
    with scratch_directory("quantize") as fresh:
        assert fresh.parent == tmp_path and fresh.name.startswith(f"edgetune-quantize-{os.getpid()}-")
        assert not killed.exists() and live.is_dir() and unnamed.is_dir() and other_purpose.is_dir()
    assert not fresh.exists()
    assert sorted(Path(path).name for path in os.listdir(tmp_path)) == sorted(
        path.name for path in (live, unnamed, other_purpose))
