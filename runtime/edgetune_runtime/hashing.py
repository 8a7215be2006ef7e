"""Content hashes shared by the toolchain (which writes them) and the runtime (which checks them)."""

from __future__ import annotations

import hashlib
import json
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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(payload: object) -> str:
    """sha256 of `payload`'s canonical JSON (sorted keys, no spaces): equal data, equal digest."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return sha256_bytes(canonical.encode("utf-8", "surrogatepass"))


class BackgroundSha256:
    """The sha256 of a file, computed on a thread of its own from construction on.

    File reads and hashlib both release the GIL, so the caller's own work (building an ONNX Runtime
    session, loading a tokenizer) runs alongside it on another core.
    """

    def __init__(self, path: str | Path) -> None:
        self._hexdigest: str | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._hash, args=(path,), daemon=True)
        self._thread.start()

    def _hash(self, path: str | Path) -> None:
        try:
            self._hexdigest = sha256_file(path)
        except OSError as error:  # re-raised in the caller's thread, where it can be reported
            self._error = error

    def hexdigest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._hexdigest
