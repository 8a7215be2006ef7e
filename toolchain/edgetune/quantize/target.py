"""`edgetune quantize --target`: score the variants on the CPU the bundle ships to, emulated when it is not this one.

ONNX Runtime picks int8 kernels by instruction set (edgetune_runtime.targets): a variant inside the
accuracy budget on this CPU can fall outside it on another. For a target other than this machine's,
every variant's outputs on held-out texts are computed under qemu-user by scripts/emulate.sh (the
runtime's `graph_outputs` module) and scored here. Latency under emulation is the emulator's, so
there the choice is accuracy first, then size.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy

from edgetune.errors import EdgetuneError
from edgetune_runtime.device import describe_machine
from edgetune_runtime.targets import TARGETS, cpu_target

TARGET_CHOICES = ("host", *TARGETS)
# qemu's TCG emulates x86 up to AVX2: no AVX-512, so a VNNI CPU cannot be emulated on another machine.
EMULATED_TARGETS = ("avx2", "arm64")


def emulated_target(target: str) -> str | None:
    """The target to emulate for `target` on this machine, or None when this machine is it (or `host`)."""
    host = cpu_target(describe_machine())
    if target in ("host", host):
        return None
    if target not in EMULATED_TARGETS:
        raise EdgetuneError(f"--target {target}: this CPU is {host} and {target} cannot be emulated here (qemu has no "
                            f"AVX-512); quantize on a {target} machine, or choose one of "
                            f"{', '.join(EMULATED_TARGETS)}")
    return target


def emulate_script() -> Path:
    """scripts/emulate.sh of this source checkout (emulation sets up system packages: it is not pip-installed)."""
    import edgetune

    script = Path(edgetune.__file__).resolve().parents[2] / "scripts" / "emulate.sh"
    if not script.is_file():
        raise EdgetuneError(f"--target needs scripts/emulate.sh from a source checkout of edgetune (looked at "
                            f"{script}); clone the repository, or quantize on the target itself")
    return script


def outputs_on_target(target: str, graphs: dict[str, Path], batches: list[dict[str, numpy.ndarray]],
                      scratch_dir: Path) -> dict[str, numpy.ndarray]:
    """Each graph's first output on `batches`, computed on the emulated `target`; keyed like `graphs`."""
    from edgetune_runtime.graph_outputs import save_feeds

    feeds, output_dir = scratch_dir / f"{target}-feeds.json", scratch_dir / f"{target}-outputs"
    output_dir.mkdir(exist_ok=True)
    save_feeds(feeds, batches)
    command = ["bash", str(emulate_script()), "--exec", target, "-m", "edgetune_runtime.graph_outputs", str(feeds),
               str(output_dir), *map(str, graphs.values())]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgetuneError(f"--target {target}: the emulated run failed ({last}); run "
                            f"`{emulate_script()} --setup-only --targets {target}` to see why")
    return {name: numpy.load(output_dir / f"{path.stem}.npy") for name, path in graphs.items()}
