"""The one timing loop of both packages: contestants take shuffled turns on each item, timed in milliseconds.

Running contestants one after another lets a burst of load on a shared or throttling machine land
on one of them only; taking turns on every item spreads it over all alike, so their ratios stay
honest even when the milliseconds do not. The turn order is shuffled per item (seeded, so a rerun
takes the same turns): in a fixed order the call right after a large model's call always finds its
own weights pushed out of the CPU caches (measured: 7% on the p50 of the contestant behind fp32).
Torch-free, so the runtime's bench, the toolchain's quantize stage and the PyTorch baseline share it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping


def interleaved_timings(contestants: Mapping[str, Callable[[int], object]], count: int, *, warmup: int,
                        seed: int = 0) -> dict[str, list[float]]:
    """Milliseconds of `contestant(index)` for every index in `range(count)`, per contestant, in index order.

    Each index runs through every contestant once, in a turn order shuffled per index. First, untimed,
    the first `warmup` indices (at most `count`) run through every contestant the same way: first calls
    allocate buffers, pick kernels and fill caches, which is not what a user sees.
    """
    if count < 0 or warmup < 0:
        raise ValueError(f"count ({count}) and warmup ({warmup}) must not be negative")
    turns, shuffle = list(contestants), random.Random(seed).shuffle
    for index in range(min(warmup, count)):
        shuffle(turns)
        for name in turns:
            contestants[name](index)
    timings: dict[str, list[float]] = {name: [] for name in contestants}
    clock = time.perf_counter
    for index in range(count):
        shuffle(turns)
        for name in turns:
            call = contestants[name]
            started = clock()
            call(index)
            timings[name].append((clock() - started) * 1000)
    return timings
