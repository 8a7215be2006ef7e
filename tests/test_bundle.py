"""Bundles: complete, sealed, verifiable on the device; tampering of any kind is refused."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.errors import EdgetuneError
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import BundleError
from edgetune_runtime.manifest import seal_manifest


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(zip=True, ort_format=True, golden_examples=6))
    return output


def _copy(bundle_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle_dir, target)
    return target


def test_bundle_holds_everything_a_device_needs(bundle_dir):
    names = {p.name for p in bundle_dir.iterdir()}
    assert {"model.onnx", "model.ort", "required_operators.config", "tokenizer.json", "labels.json",
            "golden.json", "README.md", "manifest.json"} == names
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["task"] == "text-classification"
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["classification"]["pad_token"] == "[PAD]"
    assert manifest["provenance"]["data_fingerprint"] and manifest["tuned_for"]["execution_provider"]
    assert len(json.loads((bundle_dir / "golden.json").read_text())) == 6
    card = (bundle_dir / "README.md").read_text()
    assert "## Provenance" in card and manifest["provenance"]["data_fingerprint"] in card
    assert bundle_dir.with_suffix(".zip").is_file()


def test_directory_and_zip_load_verify_and_predict_the_same(bundle_dir):
    from_dir = Bundle.load(bundle_dir)
    from_zip = Bundle.load(bundle_dir.with_suffix(".zip"))
    assert from_dir.verify().passed and from_zip.verify().passed
    texts = ["I lost my card", "how old do I need to be", ""]
    first, second = from_dir.predict(texts, top_k=2), from_zip.predict(texts, top_k=2)
    assert first == second and len(first[0]) == 2
    assert sum(p.probability for p in from_dir.predict(texts, top_k=4)[0]) == pytest.approx(1.0, abs=1e-5)


def test_existing_bundle_is_not_overwritten(bundle_dir, tiny_export_dir):
    with pytest.raises(EdgetuneError, match="--force"):
        build_bundle(tiny_export_dir, bundle_dir, BundleConfig())


def test_changed_model_bytes_are_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx does not match its sha256"):
        Bundle.load(copy)


def test_a_truncated_model_is_reported_as_changed_not_as_unloadable(bundle_dir, tmp_path):
    # The session is built while the model's hash is computed; the hash verdict must win.
    copy = _copy(bundle_dir, tmp_path)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes()[:1000])
    with pytest.raises(BundleError, match="model.onnx does not match its sha256"):
        Bundle.load(copy)


def test_background_sha256_is_the_sha256(tmp_path):
    import hashlib

    from edgetune_runtime.hashing import BackgroundSha256

    data = bytes(range(256)) * 40_000
    (tmp_path / "weights.bin").write_bytes(data)
    assert BackgroundSha256(tmp_path / "weights.bin").hexdigest() == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError):
        BackgroundSha256(tmp_path / "missing.bin").hexdigest()


def test_edited_manifest_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["classification"]["labels"][0] = "something_else"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest was modified"):
        Bundle.load(copy)


def test_missing_file_and_newer_format_are_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    (copy / "golden.json").unlink()
    with pytest.raises(BundleError, match="golden.json is listed in the manifest but missing"):
        Bundle.load(copy)
    newer = _copy(bundle_dir, tmp_path / "n")
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps(seal_manifest(manifest | {"format_version": 99})))
    with pytest.raises(BundleError, match="format 99 is newer than this runtime supports"):
        Bundle.load(newer)


def test_zip_with_path_traversal_or_absolute_names_is_refused(bundle_dir, tmp_path):
    for name, bad_member in (("dotdot", "../evil.txt"), ("absolute", "/tmp/evil.txt")):
        archive_path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(archive_path, "w") as archive:
            for path in bundle_dir.iterdir():
                archive.write(path, f"b/{path.name}")
            archive.writestr(bad_member, "x")
        with pytest.raises(BundleError, match="outside the bundle|absolute path"):
            Bundle.load(archive_path)


def test_symlink_pointing_outside_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    outside = tmp_path / "outside.json"
    shutil.copy2(copy / "labels.json", outside)
    (copy / "labels.json").unlink()
    (copy / "labels.json").symlink_to(outside)
    with pytest.raises(BundleError, match="labels.json is a link or points outside"):
        Bundle.load(copy)


def _runtime_cli(*arguments: str):
    import subprocess
    import sys

    # The runtime CLI must work with the heavy stack absent, as on a device.
    code = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
            "from edgetune_runtime.cli import main; sys.argv = ['edgetune-runtime', *sys.argv[1:]]; main()")
    return subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True)


def test_runtime_cli_verifies_and_predicts(bundle_dir):
    verified = _runtime_cli("verify", str(bundle_dir))
    assert verified.returncode == 0 and "6 golden examples reproduce" in verified.stdout, verified.stderr
    predicted = _runtime_cli("predict", str(bundle_dir.with_suffix(".zip")), "I lost my card", "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr
    line = json.loads(predicted.stdout)
    assert line["text"] == "I lost my card" and len(line["predictions"]) == 2


def test_runtime_cli_refuses_a_tampered_bundle_in_one_line(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    (copy / "tokenizer.json").write_text("{}")
    result = _runtime_cli("verify", str(copy))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {copy}: tokenizer.json does not match its sha256 in the manifest (changed or corrupt)"]


def test_session_tuning_travels_in_the_manifest_and_bad_tuning_is_refused(bundle_dir, tmp_path):
    from edgetune_runtime.errors import InputError

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["session"]["disabled_optimizers"] == ["SkipLayerNormFusion"]
    copy = _copy(bundle_dir, tmp_path)
    manifest["session"] = {"disabled_optimizers": "SkipLayerNormFusion"}  # a string, not a list
    (copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(InputError, match="session.disabled_optimizers"):
        Bundle.load(copy)


def test_the_bundled_graph_outputs_probabilities_equal_to_a_softmax_of_its_logits(bundle_dir):
    import numpy
    import onnxruntime

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["classification"]["probabilities_output"] == "probabilities"
    assert [output["name"] for output in manifest["outputs"]] == ["logits", "probabilities"]
    bundle = Bundle.load(bundle_dir)
    texts = ["where is my card", "refund please", "x"]
    session = onnxruntime.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for text in texts:  # one at a time: dynamic int8 would otherwise scale per batch
        logits, probabilities = session.run(["logits", "probabilities"], bundle.encode([text]))
        expected = numpy.exp(logits - logits.max()) / numpy.exp(logits - logits.max()).sum()
        numpy.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
        numpy.testing.assert_allclose(bundle.predict_proba([text]), probabilities, rtol=1e-6)
    assert numpy.allclose(bundle.predict_proba(texts).sum(axis=1), 1.0, atol=1e-5)


def test_a_bundle_that_hands_over_logits_gets_the_softmax_from_the_runtime(bundle_dir, tmp_path):
    # Bundles written before the softmax moved into the graph name no probabilities output.
    import numpy

    copy = _copy(bundle_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["classification"]["probabilities_output"]
    (copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    texts = ["where is my card", "refund please", "x"]
    from_graph, from_runtime = Bundle.load(bundle_dir), Bundle.load(copy)
    for text in texts:
        numpy.testing.assert_allclose(from_runtime.predict_proba([text]), from_graph.predict_proba([text]),
                                      rtol=1e-5, atol=1e-7)
    assert from_runtime.verify().passed


def test_a_probabilities_output_the_model_lacks_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["classification"]["probabilities_output"] = "scores"
    (copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(BundleError, match="probabilities_output 'scores' is not an output of the model"):
        Bundle.load(copy)
