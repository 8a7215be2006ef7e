"""Write output directories so that an interrupted run never leaves a half-written result at the final path.

Everything is built in a hidden temporary sibling of the destination (same filesystem, so the final
`rename` is atomic) and moved into place only once complete. Single files go through the runtime's
`edgetune_runtime.atomic_write` (the one copy both packages use); `write_json_atomic` is re-exported
from there for the toolchain's callers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune_runtime.atomic_write import TEMPORARY_MARK, current_umask, fsync_path, write_json_atomic

__all__ = ["atomic_directory", "write_json_atomic"]


@contextlib.contextmanager
def atomic_directory(destination: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces `destination` when the block exits cleanly.

    Raises `EdgetuneError` up front when the destination exists and `overwrite` is false, so no
    work is wasted. On any exception the temporary directory is removed and the destination is
    left exactly as it was.
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise EdgetuneError(f"{destination} already exists; choose another output path or pass --force to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(destination)
    # The pid in the name tells a later run whether the writer is still alive (see below).
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}{TEMPORARY_MARK}{os.getpid()}-",
                                    dir=destination.parent))
    # mkdtemp makes the directory private (0700); the result should have the usual permissions.
    staging.chmod(0o777 & ~current_umask())
    try:
        yield staging
        # A power cut after the rename must not leave the new name pointing at files still in the page cache.
        _fsync_tree(staging)
        if destination.exists():
            # Move the old result aside first so that a crash between the two renames loses nothing.
            trash = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            destination.rename(trash)
            staging.rename(destination)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(destination)
        fsync_path(destination.parent)  # the rename itself
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (folders after their contents) to the disk."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                fsync_path(path)
        fsync_path(Path(folder))


def _remove_abandoned_staging(destination: Path) -> None:
    """Delete staging folders left beside `destination` by killed runs, so repeated kills leave no litter.

    A folder is abandoned when the process named in it no longer exists; a live writer's is kept.
    """
    prefix = f".{destination.name}.tmp-"
    for path in destination.parent.glob(glob.escape(prefix) + "*"):
        pid = path.name[len(prefix):].split("-")[0]
        if path.is_dir() and pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
