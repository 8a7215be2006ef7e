"""The tiny chat model as an ONNX chat artifact and as a bundle, built once per test session.

`tiny_chat_onnx_dir` runs onnxruntime-genai's model builder on `tiny_chat_dir` (fp32, ~10 s) and
writes the artifact's edgetune.json as the contract describes (stage export, task text-generation,
data, system prompt, metrics). When the toolchain's own chat export lands, this fixture is the one
place to swap for it. Both test files import the fixtures; the artifact and the bundle are kept in
the session's base temp folder, so the second importer reuses them instead of building again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BITEXT

SYSTEM_PROMPT = "You are a customer support agent."


def export_chat_artifact(model_dir: Path, output: Path) -> Path:
    """The builder's fp32 export of `model_dir` plus an edgetune.json naming its held-out data."""
    from edgetune.stage_manifest import write_stage_manifest

    staging = output.with_name(output.name + ".partial")
    result = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o",
                             str(staging), "-p", "fp32", "-e", "cpu", "-c", str(output.with_name("builder-cache"))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    data_config = {"train": str(BITEXT), "system_prompt": SYSTEM_PROMPT, "allow_duplicate_prompts": True}
    write_stage_manifest(staging, "export", "text-generation", {
        "variant": "fp32", "source_model": str(model_dir),
        "data": {"fingerprint": "tiny-chat-test", "config": data_config},
        "system_prompt": SYSTEM_PROMPT, "metrics": {"perplexity": 380.5, "decode_tokens_per_s": 1500.0}})
    staging.rename(output)
    return output


@pytest.fixture(scope="session")
def tiny_chat_onnx_dir(tmp_path_factory, tiny_chat_dir) -> Path:
    if not BITEXT.is_file():
        pytest.skip(f"{BITEXT} is not on this machine (the artifact's held-out conversations come from it)")
    output = tmp_path_factory.getbasetemp() / "tiny_chat_onnx"
    if not (output / "edgetune.json").is_file():
        export_chat_artifact(tiny_chat_dir, output)
    return output


@pytest.fixture(scope="session")
def tiny_chat_bundle_dir(tmp_path_factory, tiny_chat_onnx_dir) -> Path:
    from edgetune.bundle.build import build_bundle
    from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig

    output = tmp_path_factory.getbasetemp() / "tiny_chat_bundle"
    if not (output / "manifest.json").is_file():
        # A small context, so the over-the-context tests need only a short prompt.
        build_bundle(tiny_chat_onnx_dir, output, GenerationBundleConfig(max_new_tokens=32, context_length=256))
    return output
