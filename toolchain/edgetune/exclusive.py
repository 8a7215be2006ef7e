"""One process at a time per output: a second run into the same place is refused at once, naming the first.

Two runs writing one output (a run directory, a fine-tuning output and its checkpoints) would share and
overwrite each other's files and one would fail only at the end. An advisory `flock` on a lock file is
released by the kernel when the holder exits however it dies, so a killed run never leaves a stale lock.
Not `filelock`: it takes the same flock but cannot tell the second run who holds it, and the one-line
refusal names the holder's pid, which this module writes into the file it locks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edgetune.errors import EdgetuneError


@contextlib.contextmanager
def exclusive_use(lock_path: Path, what: str, how_to_avoid: str) -> Iterator[None]:
    """Hold `lock_path` for the block; raise one line naming the holder's pid when another process holds it.

    `what` names the guarded thing ("runs/x is in use by ..."), `how_to_avoid` tells the user what to do.
    """
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # "a+" and not "w": opening must not erase the holder's pid before we know whether we may have the lock.
    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise EdgetuneError(f"{what} is in use by {who} (lock {lock_path}); wait for it to finish, "
                                f"or {how_to_avoid}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
