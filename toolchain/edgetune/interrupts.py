"""Termination signals unwind like Ctrl-C, so `with` blocks and `finally` clauses clean up on the way out.

Python's default SIGTERM and SIGHUP handlers end the process at once, skipping every cleanup: a killed
stage would leave its staging directory and `quantize` its 60 MB scratch directory in the temp dir.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# SIGINT already raises KeyboardInterrupt; SIGHUP (a closed terminal) does not exist on Windows.
TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `KeyboardInterrupt` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def interrupt(_signal_number, _frame):
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in TERMINATION_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
