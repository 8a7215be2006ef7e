"""What every benchmark result records about where and how it ran."""

from __future__ import annotations

import importlib.metadata
import shlex
import sys
from datetime import datetime, timezone

from edgetune_runtime.device import describe_machine

_PACKAGES = ("edgetune", "torch", "transformers", "peft", "accelerate", "datasets", "optimum-onnx", "onnxruntime",
             "numpy")


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
