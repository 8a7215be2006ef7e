"""Whether scripts/emulate.sh can run here: the slow emulated tests skip, saying why, where it cannot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

EMULATE = Path(__file__).resolve().parents[1] / "scripts" / "emulate.sh"
EMULATE_CACHE = Path(os.environ.get("EDGETUNE_EMULATE_CACHE", Path.home() / ".cache/edgetune/emulate"))


def emulation_unavailable() -> str | None:
    """Why the emulated targets cannot run here, or None. The tests never set them up (apt, downloads):
    `scripts/emulate.sh --setup-only` does, once."""
    if shutil.which("qemu-x86_64") is None or shutil.which("qemu-aarch64") is None:
        return "qemu-user is not installed (run scripts/emulate.sh --setup-only as root)"
    for target in ("avx2", "arm64"):
        if not (EMULATE_CACHE / target / "site-packages" / ".complete").is_file():
            return f"the emulated {target} target is not set up in {EMULATE_CACHE} (scripts/emulate.sh --setup-only)"
    if os.geteuid() != 0:
        return "scripts/emulate.sh needs root (it bind-mounts the emulated CPU's /proc/cpuinfo)"
    return None
