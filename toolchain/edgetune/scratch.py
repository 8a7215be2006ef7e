"""Scratch directories in the temp dir that a stage removes however it ends, and sweeps when a killed run left one.

`quantize` builds each variant (60 MB for a small model) in a scratch directory. A `with
TemporaryDirectory` is removed on exceptions, Ctrl-C and (through the CLI's `termination_as_interrupt`)
SIGTERM/SIGHUP; only SIGKILL or a power cut can leave one, so the name carries the writer's pid and the
next run of the same purpose removes those whose process is gone, as `atomic_directory` does for staging.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgetune.atomic import process_exists


def scratch_prefix(purpose: str) -> str:
    return f"edgetune-{purpose}-"


@contextlib.contextmanager
def scratch_directory(purpose: str) -> Iterator[Path]:
    """A fresh `edgetune-<purpose>-<pid>-<random>` directory in the temp dir, removed when the block ends."""
    remove_abandoned_scratch(purpose)
    path = Path(tempfile.mkdtemp(prefix=f"{scratch_prefix(purpose)}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned_scratch(purpose: str, temp_dir: str | Path | None = None) -> list[Path]:
    """Delete scratch directories of `purpose` whose writer process no longer exists; return what was removed.

    Directories without a pid in their name (older versions) and those of live processes are kept.
    """
    prefix = scratch_prefix(purpose)
    removed = []
    with os.scandir(temp_dir or tempfile.gettempdir()) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
                continue
            pid = entry.name[len(prefix):].split("-")[0]
            if pid.isdigit() and not process_exists(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed
