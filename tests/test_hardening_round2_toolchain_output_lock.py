"""Hardening round 2: two `edgetune finetune` (or `distill`) runs into one `-o` are refused at once.

Main let the second run share the first one's checkpoints, and one of them failed only at the end. Now the
training loop both commands share holds a lock on the output (the mechanism `edgetune run` uses for its run
directory, one copy in `edgetune.exclusive`); the second run fails in one line naming the first's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.cli.main import cli
from edgetune.errors import EdgetuneError

EDGETUNE = [sys.executable, "-m", "edgetune"]


def _finetune_arguments(tiny_bert_dir: Path, data: dict[str, Path], output: Path, epochs: int) -> list[str]:
    return ["finetune", "--model", str(tiny_bert_dir), "--train", str(data["train"]), "-o", str(output),
            "--epochs", str(epochs), "--batch-size", "8", "--eval-steps", "3", "--patience", "0"]


def _wait_for(condition, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the first run ended before the second started: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the first run never started training")
        time.sleep(0.05)


def test_a_second_finetune_into_the_same_output_is_refused_naming_the_first(tmp_path, tiny_bert_dir,
                                                                            small_banking77):
    output = tmp_path / "model"
    first = subprocess.Popen([*EDGETUNE, *_finetune_arguments(tiny_bert_dir, small_banking77, output, 200)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        # Training has begun once the first checkpoint is on disk: the moment main let a second run in.
        _wait_for(lambda: any((tmp_path / ".model.work" / "checkpoints").glob("checkpoint-*")), first)
        second = CliRunner().invoke(cli, _finetune_arguments(tiny_bert_dir, small_banking77, output, 1))
        assert first.poll() is None, "the first run must still be running for this test to mean anything"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert second.exit_code == 2, second.output
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"{output} is in use by process {first.pid}" in lines[0] and "-o" in lines[0], lines[0]


_HOLDER = """
import sys, time
from pathlib import Path
from edgetune.exclusive import exclusive_use
with exclusive_use(Path(sys.argv[1]), "x", "y"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    from edgetune.exclusive import exclusive_use

    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock)], stdout=subprocess.PIPE,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(EdgetuneError, match=f"out is in use by process {holder.pid} .*; wait for it"):
            with exclusive_use(lock, "out", "pass another -o"):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with exclusive_use(lock, "out", "pass another -o"):  # a killed holder leaves no stale lock
        assert lock.read_text().strip() == str(os.getpid())
