"""Trim a runtime-only Python environment to what an app runs, for devices where every MB counts.

`pip install edgetune-runtime` brings numpy's test suites and build tools, onnxruntime's model
conversion tooling (quantisation, the transformer optimiser) and its C API library for C/C++ callers:
about a third of the environment, none of it loaded by a Python app that runs bundles. `trim_environment`
moves those paths aside, checks in a fresh interpreter that numpy, onnxruntime and tokenizers still
import (and, given a bundle, that it verifies), then deletes them, or puts everything back if the
check fails. It refuses an environment where another package depends on onnxruntime: the toolchain
(`edgetune quantize`) and optimum use exactly the tooling this removes. onnxruntime-genai (the
`chat` extra) is allowed: it loads onnxruntime's C API library, which is then kept, and its model
builder (the toolchain's job) goes.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgetune_runtime.errors import InputError

# Paths under site-packages that a Python app running bundles never imports, with the reason.
TRIMMABLE = (
    ("numpy/**/tests", "numpy's test suites"),
    ("numpy/f2py", "numpy's Fortran wrapper generator"),
    ("numpy/distutils", "numpy's build tooling"),
    ("numpy/_pyinstaller", "numpy's PyInstaller hooks"),
    ("onnxruntime/quantization", "onnxruntime's quantisation tooling (the toolchain's job)"),
    ("onnxruntime/transformers", "onnxruntime's transformer graph optimiser (the toolchain's job)"),
    ("onnxruntime/tools", "onnxruntime's model conversion tools"),
    ("onnxruntime/datasets", "onnxruntime's sample models"),
    ("onnxruntime/backend", "onnxruntime's ONNX backend-test adapter"),
    # The C API library serves C/C++ callers; the Python module links ONNX Runtime in itself. The
    # post-trim import check proves it on each platform, and restores the file if that is not so.
    ("onnxruntime/capi/libonnxruntime.so*", "onnxruntime's C API library (unused from Python)"),
    ("onnxruntime/capi/libonnxruntime.*dylib", "onnxruntime's C API library (unused from Python)"),
    ("onnxruntime_genai/models", "onnxruntime-genai's model builder (the toolchain's job)"),
)
C_API_LIBRARY = "onnxruntime/capi/libonnxruntime"
"""onnxruntime-genai's native code loads this library at import: kept where onnxruntime-genai is installed."""
# Console scripts of the removed tooling, in the environment's bin/ (Scripts\\ on Windows).
TRIMMABLE_SCRIPTS = ("f2py", "numpy-config", "onnxruntime_test")
# Distributions allowed to depend on onnxruntime in an environment that is trimmed.
RUNTIME_DISTRIBUTIONS = {"edgetune-runtime", "onnxruntime", "onnxruntime-genai"}


@dataclass
class TrimReport:
    site_packages: str
    mb_before: float
    mb_after: float
    removed: list[str] = field(default_factory=list)
    removed_mb: float = 0.0
    dry_run: bool = False


def trim_environment(prefix: Path | None = None, *, check_bundle: Path | None = None,
                     dry_run: bool = False) -> TrimReport:
    """Remove what an app never runs from the environment at `prefix` (default: this one)."""
    prefix = Path(prefix or sys.prefix)
    scheme = sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})
    site_packages = _site_packages(prefix, scheme)
    _refuse_shared_environment(site_packages)
    paths = _trimmable_paths(site_packages, Path(scheme["scripts"]))
    mb_before, removed_mb = disk_mb(prefix), round(sum(disk_mb(path) for path in paths), 1)
    report = TrimReport(str(site_packages), mb_before, round(mb_before - removed_mb, 1), dry_run=dry_run,
                        removed=[f"{_relative(path, prefix)} ({reason})" for path, reason in paths.items()],
                        removed_mb=removed_mb)
    if dry_run or not paths:
        return report
    # Move aside on the same filesystem (a rename), check, then delete or put back: a failed check
    # or an interruption loses nothing.
    with tempfile.TemporaryDirectory(prefix=".edgetune-trim-", dir=prefix) as aside:
        moved = []
        try:
            for index, path in enumerate(paths):
                target = Path(aside) / str(index)
                os.rename(path, target)
                moved.append((path, target))
            problem = _check(Path(scheme["scripts"]), check_bundle)
        except BaseException:
            _put_back(moved)
            raise
        if problem:
            _put_back(moved)
            raise InputError(f"{prefix}: after trimming, {problem}; nothing was removed")
    report.mb_after = disk_mb(prefix)  # measured, not assumed
    return report


def disk_mb(path: Path) -> float:
    """Space the files under `path` take on disk (like `du`), links not followed."""
    if not path.is_dir():
        return round(os.lstat(path).st_blocks * 512 / 2**20, 1) if path.exists() else 0.0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(Path(root) / name).st_blocks * 512
    return round(total / 2**20, 1)


def _site_packages(prefix: Path, scheme: dict[str, str]) -> Path:
    candidates = {Path(scheme[key]) for key in ("purelib", "platlib")}
    with_onnxruntime = [path for path in candidates if (path / "onnxruntime").is_dir()]
    if not with_onnxruntime:
        raise InputError(f"{prefix}: no onnxruntime in this environment's site-packages; trim-env trims the "
                         "environment it runs in (run that environment's own edgetune-runtime)")
    return with_onnxruntime[0]


def _refuse_shared_environment(site_packages: Path) -> None:
    for distribution in importlib.metadata.distributions(path=[str(site_packages)]):
        name = _normalise(distribution.metadata["Name"] or "")
        requirements = {_normalise(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
                        for requirement in distribution.requires or []}
        if name not in RUNTIME_DISTRIBUTIONS and any(req.startswith("onnxruntime") for req in requirements):
            raise InputError(f"{site_packages}: {distribution.metadata['Name']} is installed here and depends on "
                             "onnxruntime, whose tooling trim-env removes; trim only an environment that just "
                             "runs bundles (python -m venv, then pip install edgetune-runtime)")


def _trimmable_paths(site_packages: Path, scripts: Path) -> dict[Path, str]:
    """Each path to remove, with why an app can do without it."""
    keeps_c_api = (site_packages / "onnxruntime_genai").is_dir()
    matched = {path: reason for pattern, reason in TRIMMABLE for path in site_packages.glob(pattern)
               if not (keeps_c_api and pattern.startswith(C_API_LIBRARY))}
    # A path inside another matched path goes with it (numpy/f2py/tests with numpy/f2py).
    found = {path: matched[path] for path in sorted(matched) if not any(parent in matched for parent in path.parents)}
    for name in TRIMMABLE_SCRIPTS:
        for path in (scripts / name, scripts / f"{name}.exe"):
            if path.is_file():
                found[path] = "console script of the removed tooling"
    return found


def _check(scripts: Path, bundle: Path | None) -> str | None:
    """None when a fresh interpreter of the environment imports the runtime's stack (and verifies `bundle`)."""
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    code = ("import numpy, onnxruntime, tokenizers; onnxruntime.get_available_providers()\n"
            "import importlib.util, sys\n"
            "if importlib.util.find_spec('onnxruntime_genai'):\n"
            "    import onnxruntime_genai\n"
            "if len(sys.argv) > 1:\n"
            "    from edgetune_runtime.bundle import Bundle\n"
            "    if not Bundle.load(sys.argv[1], intra_op_threads=1).verify().passed:\n"
            "        sys.exit('the golden examples disagree')\n")
    command = [str(python if python.exists() else sys.executable), "-c", code, *([str(bundle)] if bundle else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"the runtime no longer works ({last})"


def _put_back(moved: list[tuple[Path, Path]]) -> None:
    for original, aside in reversed(moved):
        os.rename(aside, original)


def _relative(path: Path, prefix: Path) -> str:
    try:
        return str(path.relative_to(prefix))
    except ValueError:
        return str(path)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

