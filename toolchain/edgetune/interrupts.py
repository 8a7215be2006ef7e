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


class TerminatedBySignal(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised where the main thread was so that everything on the way out cleans up."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


# The signal received in the current block, if any. A signal landing inside a C extension's import or a
# library's broad `except Exception` can reach us as another exception (`ImportError: initialization
# failed`); code that catches broadly asks `raise_if_terminated()` so that the run still stops.
_received: TerminatedBySignal | None = None


def raise_if_terminated() -> None:
    """Raise the pending `TerminatedBySignal` when a termination signal arrived; call it in broad `except`s."""
    if _received is not None:
        raise _received


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `TerminatedBySignal` (a `KeyboardInterrupt`) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    global _received
    _received = None

    def interrupt(signal_number, _frame):
        global _received
        _received = TerminatedBySignal(signal_number)
        raise _received

    previous = {number: signal.signal(number, interrupt) for number in TERMINATION_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
