"""The batch-1 session runner: ONNX Runtime's compiled binding when a probe at load shows it works, else `run`.

`InferenceSession.run` first checks in Python that the feed names every input, that no OrtValue in
it is borrowed and that no graph capture is asked for: always true of the feeds a bundle builds, and
~7 us of the overhead right after a session run. Its compiled binding (`session._sess.run`) skips
those checks, but it is private: an ONNX Runtime release may rename it or change what it returns.
So it is used only after one call with a real feed returned what the public `run` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy

from edgetune_runtime.session import DEFAULT_PROVIDERS

# (output names, feeds, run options) -> the outputs: what both `run`s take when called positionally.
SessionRun = Callable[[Sequence[str], dict, object], list]


def batch1_runner(session, output_names: Sequence[str], probe_feeds: dict | None) -> tuple[SessionRun, bool]:
    """The runner for batch-1 calls, and whether it is the compiled binding.

    The binding is used only with the CPU provider alone (the public `run` also retries on a
    fallback provider when another one fails) and only when, on `probe_feeds`, it returns outputs
    of the same count, dtypes, shapes and values as the public `run`. `probe_feeds` None: public `run`.
    """
    binding_run = getattr(getattr(session, "_sess", None), "run", None)
    if probe_feeds is None or not callable(binding_run) or session.get_providers() != list(DEFAULT_PROVIDERS):
        return session.run, False
    try:
        expected = session.run(list(output_names), probe_feeds)
    except Exception:  # a model that fails on the probe fails on the public path too, where predict reports it
        return session.run, False
    try:
        got = binding_run(list(output_names), probe_feeds, None)
    except Exception:  # renamed arguments, a changed signature: anything but a working binding
        return session.run, False
    return (binding_run, True) if _same_outputs(got, expected) else (session.run, False)


def _same_outputs(got: object, expected: list) -> bool:
    if not isinstance(got, list) or len(got) != len(expected):
        return False
    for got_array, expected_array in zip(got, expected, strict=True):
        if not isinstance(got_array, numpy.ndarray) or got_array.dtype != expected_array.dtype \
                or got_array.shape != expected_array.shape:
            return False
        if got_array.dtype.kind not in "biufc":  # strings or objects: compared as they are
            if not numpy.array_equal(got_array, expected_array):
                return False
            continue
        # The same session on the same feed: equal up to the last bits a threaded reduction may reorder.
        if not numpy.allclose(got_array, expected_array, rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True
