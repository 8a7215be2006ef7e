"""Atomic outputs: complete or absent, never half-written; existing results are not clobbered."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.errors import EdgetuneError


def test_directory_appears_only_when_complete(tmp_path):
    destination = tmp_path / "out"
    with atomic_directory(destination) as staging:
        (staging / "a.txt").write_text("a")
        assert not destination.exists()
    assert (destination / "a.txt").read_text() == "a"
    assert list(tmp_path.iterdir()) == [destination]
    expected_mode = 0o777 & ~_umask()
    assert stat.S_IMODE(destination.stat().st_mode) == expected_mode


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_failure_leaves_nothing_and_keeps_the_old_result(tmp_path):
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(destination, overwrite=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert [p.name for p in destination.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_destination_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(EdgetuneError, match="--force"), atomic_directory(tmp_path / "out"):
        pass


def test_overwrite_replaces_the_whole_directory(tmp_path):
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "stale.txt").write_text("stale")
    with atomic_directory(destination, overwrite=True) as staging:
        (staging / "fresh.txt").write_text("fresh")
    assert [p.name for p in destination.iterdir()] == ["fresh.txt"]


def test_json_written_atomically(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json_atomic(path, {"accuracy": 0.9})
    assert path.read_text().strip().startswith("{") and [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_the_toolchain_writes_files_through_the_runtimes_one_copy():
    from edgetune_runtime import atomic_write

    assert write_json_atomic is atomic_write.write_json_atomic


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads fsync'd paths from /proc/self/fd")
def test_directory_contents_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """Every file and folder is fsync'd while still at its staging path, and the parent after the rename."""
    flushed: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        flushed.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    destination = tmp_path / "out"
    with atomic_directory(destination) as staging:
        (staging / "model.onnx").write_bytes(b"weights")
        (staging / "tokenizer").mkdir()
        (staging / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    staged = {path.relative_to(staging).as_posix() for path in flushed if path.is_relative_to(staging)}
    assert staged == {".", "model.onnx", "tokenizer", "tokenizer/vocab.txt"}
    assert flushed[-1] == tmp_path  # the rename, once the contents are safe
    assert (destination / "tokenizer" / "vocab.txt").read_text() == "[PAD]\n"
