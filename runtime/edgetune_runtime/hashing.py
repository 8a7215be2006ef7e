"""Content hashes shared by the toolchain (which writes them) and the runtime (which checks them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough to be fast, small enough for constant memory on a phone


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
