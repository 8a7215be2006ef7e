"""`edgetune-runtime trim-env`: the device install (no pip, four dependencies, tooling trimmed) stays
working, a failed check puts everything back, and an environment with the toolchain is refused."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.trim_env import disk_mb

RUNTIME_SOURCE = Path(__file__).resolve().parents[1] / "runtime"
DEPENDENCIES = ("onnxruntime", "numpy", "tokenizers", "click")


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


def test_trim_env_refuses_an_environment_with_the_toolchain():
    # This test runs in the development environment, where optimum and edgetune use onnxruntime's tooling.
    done = _run([sys.executable, "-m", "edgetune_runtime.cli", "trim-env", "--dry-run"])
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "depends on onnxruntime" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    """The README's device install: a venv without pip, the runtime and its four dependencies only."""
    work = tmp_path_factory.mktemp("device_install")
    source = shutil.copytree(RUNTIME_SOURCE, work / "source", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    wheel_dir = work / "wheels"
    assert _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w",
                 wheel_dir]).returncode == 0
    environment = work / "venv"
    venv.create(environment, with_pip=False)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEPENDENCIES]
    done = _run([sys.executable, "-m", "pip", "--python", environment / "bin" / "python", "install", "-q",
                 "--disable-pip-version-check", "--no-deps", *pins, next(wheel_dir.glob("*.whl"))])
    assert done.returncode == 0, done.stderr[-2000:]
    return environment


@pytest.fixture(scope="module")
def device_bundle(tmp_path_factory, tiny_export_dir) -> Path:
    return build_bundle(tiny_export_dir, tmp_path_factory.mktemp("trim_bundle") / "tiny",
                        BundleConfig(golden_examples=4)).directory


@pytest.mark.slow
def test_device_install_trims_by_a_third_and_still_runs(device_venv, device_bundle, tmp_path):
    command = device_venv / "bin" / "edgetune-runtime"
    before = disk_mb(device_venv)

    # A check that fails (here: a bundle whose model was changed) puts everything back.
    broken = shutil.copytree(device_bundle, tmp_path / "broken")
    model = bytearray((broken / "model.onnx").read_bytes())
    model[-10] ^= 0xFF
    (broken / "model.onnx").write_bytes(bytes(model))
    refused = _run([command, "trim-env", "--check-bundle", broken])
    assert refused.returncode == 2 and "nothing was removed" in refused.stderr, refused.stderr
    assert disk_mb(device_venv) == before
    assert not list(device_venv.glob(".edgetune-trim-*"))

    dry = _run([command, "trim-env", "--dry-run"])
    assert dry.returncode == 0 and "would remove lib/" in dry.stdout and disk_mb(device_venv) == before

    trimmed = _run([command, "trim-env", "--check-bundle", device_bundle])
    assert trimmed.returncode == 0, trimmed.stderr
    after = disk_mb(device_venv)
    assert after < before * 0.75, (before, after)
    assert not list(device_venv.glob("lib/python*/site-packages/onnxruntime/quantization"))
    assert "4 golden examples reproduce" in _run([command, "verify", device_bundle]).stdout
    predicted = _run([command, "predict", device_bundle, "where is my card"])
    assert predicted.returncode == 0 and json.loads(predicted.stdout)["predictions"], predicted.stderr
    blocked = _run([device_venv / "bin" / "python", "-c", "import torch"])
    assert blocked.returncode != 0
