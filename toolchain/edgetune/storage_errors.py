"""Recognise a read or write that failed for a reason the user must fix: storage ran out, or a path is unusable.

A full disk, an exhausted quota, a file-size limit, a read-only or permission-denied location and an
output path under a file are the user's to fix, so the CLI reports them as one line instead of a
traceback. Python raises them as `OSError` with an errno, but torch's
checkpoint writer, safetensors (Rust) and ONNX Runtime (C++) raise their own types whose message
is all that is left of the cause.
"""

from __future__ import annotations

import errno
import os
import re

# errno -> what ran out and how to fix it
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device; free some space and run again",
    errno.EDQUOT: "the disk quota is exhausted; free some space and run again",
    errno.EFBIG: "a file grew past this process's file-size limit (ulimit -f); raise it and run again",
}
# How the same failures read once wrapped: the C library's text for each errno, Rust's io::Error
# debug form ("Os { code: 28, ...") and torch's zip writer, which reports a short write as an
# unexpected position (its reader never says this, so a corrupt file read is not mistaken for it).
_MESSAGES = {os.strerror(number): number for number in STORAGE_ERRNOS}
# A path the user gave (or one under it) that cannot be read or written as asked. EISDIR is left out:
# the CLI refuses directories where files are due, so it comes from edgetune's own renames - a bug.
PATH_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)
_RUST_IO_CODE = re.compile(r"Os \{ code: (\d+)")
_TORCH_SHORT_WRITE = ("PytorchStreamWriter failed writing", "unexpected pos")


def storage_failure(error: BaseException) -> str | None:
    """What ran out and the fix (one line) when `error` or any exception it wraps is a storage failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            written = current.filename2 or current.filename  # a copy names its source first, its target second
            what, fix = STORAGE_ERRNOS[current.errno].split("; ")
            return f"{what} while writing {written}; {fix}" if written else STORAGE_ERRNOS[current.errno]
        text = str(current)
        for message, number in _MESSAGES.items():
            if message in text:
                return STORAGE_ERRNOS[number]
        code = _RUST_IO_CODE.search(text)
        if code and int(code.group(1)) in STORAGE_ERRNOS:
            return STORAGE_ERRNOS[int(code.group(1))]
        if any(marker in text for marker in _TORCH_SHORT_WRITE):
            return ("a checkpoint could not be written in full (the disk is full or a file-size limit was reached); "
                    "free some space and run again")
        current = current.__cause__ or current.__context__
    return None


def path_failure(error: BaseException) -> str | None:
    """One line naming the path and the reason when `error` is an OSError about a named path, else None."""
    if isinstance(error, OSError) and error.errno in PATH_ERRNOS and (error.filename or error.filename2):
        path = error.filename2 or error.filename
        return f"cannot use {path}: {error.strerror}; check the path and its permissions, or choose another"
    return None
