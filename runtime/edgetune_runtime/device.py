"""A description of the machine a measurement ran on, so results from many devices can be merged."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# ISA features that decide which int8/fp16 kernels ONNX Runtime and PyTorch can use.
_INTERESTING_FLAGS = (
    "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "f16c",
    # Arm (from /proc/cpuinfo "Features")
    "neon", "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16",
)


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return model, flags
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


EMULATED_ENV = "EDGETUNE_EMULATED"
"""Set by scripts/emulate.sh to the emulator's command (`qemu-aarch64 -cpu neoverse-n1`): a process cannot
tell from inside that its CPU is translated, and latency measured there is not the named CPU's."""


def describe_machine() -> dict:
    """CPU model, core counts, ISA flags that matter for inference, OS and Python; `emulated` under an emulator."""
    model, flags = _cpuinfo()
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        usable_cores = os.cpu_count()
    return {
        "cpu_model": model,
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "isa_flags": sorted(f for f in _INTERESTING_FLAGS if f in flags),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    } | ({"emulated": os.environ[EMULATED_ENV]} if os.environ.get(EMULATED_ENV) else {})
