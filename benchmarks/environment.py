"""What every benchmark result records about where and how it ran."""

from __future__ import annotations

import importlib.metadata
import shlex
import sys
from datetime import datetime, timezone

from edgetune_runtime.device import describe_machine

_PACKAGES = ("edgetune", "torch", "transformers", "peft", "accelerate", "datasets", "optimum-onnx", "onnxruntime",
             "numpy", "trl", "onnxruntime-genai", "rouge-score", "onnxruntime-extensions")


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    try:
        with open("/proc/stat") as handle:
            return [int(value) for value in handle.readline().split()[1:]]
    except OSError:
        return []


def steal_fraction(start: list[int], end: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two snapshots.

    On a shared VM this is the noise behind every wall time: at 50% steal a run takes twice as long.
    """
    if len(start) < 8 or len(end) < 8:
        return None
    deltas = [b - a for a, b in zip(start, end, strict=False)]
    total = sum(deltas[:8])
    return round(deltas[7] / total, 3) if total else None


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run_context() -> dict:
    """Machine, library versions, torch threads, time and the exact command line."""
    import torch

    return {
        "command": " ".join(shlex.quote(part) for part in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine() | {"torch_threads": torch.get_num_threads(),
                                         "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": versions(),
    }
