"""Atomic outputs: complete or absent, never half-written; existing results are not clobbered."""

from __future__ import annotations

import os
import stat

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
