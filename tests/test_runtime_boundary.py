"""The runtime ships inside apps: it must import and run with torch and friends absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime" / "edgetune_runtime"
HEAVY = ("torch", "transformers", "optimum", "datasets", "peft", "accelerate")


def test_runtime_imports_with_the_heavy_stack_blocked():
    blocker = "; ".join(f"sys.modules[{name!r}] = None" for name in HEAVY)
    # Every module, the task modules under tasks/ included (Bundle.load imports them by name).
    modules = sorted(".".join(("edgetune_runtime", *p.relative_to(RUNTIME).with_suffix("").parts)).removesuffix(
        ".__init__") for p in RUNTIME.rglob("*.py"))
    assert "edgetune_runtime.tasks.classification" in modules
    code = f"import sys; {blocker}; import edgetune_runtime; " + "; ".join(f"import {m}" for m in modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_runtime_source_never_names_the_heavy_stack():
    for path in RUNTIME.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                root = stripped.split()[1].split(".")[0]
                assert root not in HEAVY, f"{path.name}: {stripped}"


def test_runtime_device_command_reports_the_machine():
    import json

    result = subprocess.run([sys.executable, "-m", "edgetune_runtime.cli", "device"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["logical_cores"] >= 1 and "CPUExecutionProvider" in info["execution_providers"]
