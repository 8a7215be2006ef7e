"""The runtime installs alone: a fresh virtual environment with only its wheel and its four dependencies
runs `predict` and `verify` on a bundle the toolchain built, and has no torch to fall back on.

Needs a package index (PyPI or a mirror), as setup does; pip's cache makes reruns fast.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle

RUNTIME_SOURCE = Path(__file__).resolve().parents[1] / "runtime"
# Same versions as this environment, so the test checks our code rather than a new release.
DEPENDENCIES = ("onnxruntime", "numpy", "tokenizers", "click")
HEAVY = ("torch", "transformers", "optimum", "datasets", "peft", "accelerate")

pytestmark = pytest.mark.slow  # a fresh environment and ~150 MB of wheels to unpack: 20-60 s


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("runtime_install")
    # Build the wheel from a copy, so setuptools' build/ folder never lands in the source tree.
    source = shutil.copytree(RUNTIME_SOURCE, work / "source", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w",
          work / "wheels"])
    wheel = next((work / "wheels").glob("edgetune_runtime-*.whl"))
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEPENDENCIES]
    (work / "constraints.txt").write_text("\n".join(pins) + "\n")
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", work / "constraints.txt",
          wheel])
    return environment


@pytest.fixture(scope="module")
def zipped_bundle(tmp_path_factory, tiny_export_dir) -> Path:
    output = tmp_path_factory.mktemp("install_bundle") / "tiny"
    return build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=4, zip=True)).zip_path


def test_runtime_only_environment_has_no_heavy_stack(runtime_venv):
    python = runtime_venv / "bin" / "python"
    freeze = _run([python, "-m", "pip", "freeze"]).stdout.splitlines()
    installed = {re.split(r"==| @ ", line)[0].lower() for line in freeze}
    assert {"edgetune-runtime", "onnxruntime", "numpy", "tokenizers", "click"} <= installed
    assert not installed & set(HEAVY)
    for name in HEAVY:
        blocked = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True)
        assert blocked.returncode != 0 and "No module named" in blocked.stderr


def test_runtime_only_environment_verifies_and_predicts_a_toolchain_bundle(runtime_venv, zipped_bundle):
    command = runtime_venv / "bin" / "edgetune-runtime"
    verified = _run([command, "verify", zipped_bundle])
    assert "4 golden examples reproduce on this device" in verified.stdout
    text = "I still have not received my new card"
    predicted = json.loads(_run([command, "predict", zipped_bundle, text, "--top-k", "2"]).stdout)
    here = Bundle.load(zipped_bundle).predict([text], top_k=2)[0]
    assert [p["label"] for p in predicted["predictions"]] == [p.label for p in here]
    assert predicted["predictions"][0]["probability"] == pytest.approx(here[0].probability, abs=1e-5)
