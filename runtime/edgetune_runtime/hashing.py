"""Content hashes shared by the toolchain (which writes them) and the runtime (which checks them)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough to be fast, small enough for constant memory on a phone


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class BackgroundSha256:
    """The sha256 of `data`, computed on a thread of its own from construction on.

    hashlib releases the GIL while it hashes a large buffer, so the caller's own work (building an
    ONNX Runtime session, loading a tokenizer) runs alongside it on another core.
    """

    def __init__(self, data: bytes) -> None:
        self._digest = hashlib.sha256()
        self._thread = threading.Thread(target=self._digest.update, args=(data,), daemon=True)
        self._thread.start()

    def hexdigest(self) -> str:
        self._thread.join()
        return self._digest.hexdigest()
