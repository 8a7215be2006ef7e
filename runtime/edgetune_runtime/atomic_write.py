"""Atomic file writes: the one copy shared by the runtime and the toolchain.

A file is written under a hidden temporary name in its destination folder (same filesystem, so the
rename is atomic), flushed and fsync'd, given the permissions the umask allows (mkstemp makes it
0600), and renamed into place; the folder is fsync'd too, so a power cut after the call returns
keeps the new file. On any failure, a signal included, the temporary file is removed and the
destination is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMPORARY_MARK = ".tmp-"
"""Every temporary name holds this, then the writer's pid: `.<name>.tmp-<pid>-<random>`."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a library that writes by file name (zipfile,
    matplotlib, numpy); it replaces `path` when the block exits cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}{os.getpid()}-",
                                             dir=path.parent)
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        fsync_path(temporary_path)
        os.chmod(temporary_path, 0o666 & ~current_umask())
        os.replace(temporary_path, path)
        fsync_path(path.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            # A write that hit a full disk or a file-size limit names no file: name the destination,
            # so that callers (the CLIs' one-line errors) can say which output could not be written.
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Yield an open handle (`mode` "w" or "wb") whose contents replace `path` when the block exits cleanly."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as temporary, open(temporary, mode, encoding=None if "b" in mode else encoding,
                                              newline=None if "b" in mode else "") as handle:
        yield handle
        handle.flush()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, payload: object, *, indent: int | None = 2) -> None:
    """Write `payload` as UTF-8 JSON (non-ASCII kept as is, a newline at the end)."""
    write_text_atomic(path, json.dumps(payload, indent=indent, ensure_ascii=False, default=str) + "\n")


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file or a folder (the renames in it) to the disk. Not every platform can open a folder
    for fsync (Windows cannot): there durability is best effort."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_answers_file(input_path: str | os.PathLike, output_path: str | os.PathLike, write) -> int:
    """`write(handle) -> count` into `output_path` atomically, for the commands that answer a file line by line
    (`predict --input`, `generate --input`); an output that is the input itself is refused before anything is read."""
    from edgetune_runtime.errors import InputError

    if Path(output_path).resolve() == Path(input_path).resolve():
        raise InputError(f"{output_path}: the output would overwrite the input; choose another --output")
    with atomic_file(output_path, "w") as handle:
        return write(handle)
