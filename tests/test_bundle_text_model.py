"""`edgetune bundle --tokenizer-in-graph`: a second graph that takes raw text, giving what the Python runtime gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy
import onnx
import pytest

from conftest import REPO_ROOT, read_banking77
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.bundle.text_model import TEXT_MODEL_FILE, tokenizer_op_attributes
from edgetune.errors import ConfigError, EdgetuneError
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import BundleError

pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_export_dir):
    root = tmp_path_factory.mktemp("text_model_bundles")
    build_bundle(tiny_export_dir, root / "with", BundleConfig(tokenizer_in_graph=True, golden_examples=6))
    build_bundle(tiny_export_dir, root / "without", BundleConfig(golden_examples=6))
    return root / "with", root / "without"


def test_the_text_model_is_sealed_beside_an_unchanged_model(bundles):
    with_text, without_text = bundles
    manifest = json.loads((with_text / "manifest.json").read_text())
    assert TEXT_MODEL_FILE in manifest["files"]
    section = manifest["classification"]
    assert (section["text_model"], section["text_model_input"], section["text_model_output"]) == (
        TEXT_MODEL_FILE, "text", "probabilities")
    plain = json.loads((without_text / "manifest.json").read_text())
    assert manifest["files"]["model.onnx"] == plain["files"]["model.onnx"]
    assert "text_model" not in plain["classification"]
    graph = onnx.load(str(with_text / TEXT_MODEL_FILE), load_external_data=False).graph
    assert [value.name for value in graph.input] == ["text"] and [value.name for value in graph.output] == [
        "probabilities"]
    assert graph.node[0].op_type == "BertTokenizer" and graph.node[0].domain == "ai.onnx.contrib"


def test_same_top_label_and_probabilities_as_the_python_runtime_on_banking77_test_texts(bundles):
    """Every text the tiny 600-piece vocabulary spells gives the same probabilities; the others hold a word the
    vocabulary cannot spell ("17": no "##7"), where the op's WordPiece differs (see bundle/text_model.py)."""
    bundle = Bundle.load(bundles[0])
    text_model = bundle.text_model(intra_op_threads=1)
    assert bundle.verify().passed and text_model.verify().passed
    unknown_id = bundle.tokenizer.token_to_id("[UNK]")
    texts = [row["text"] for row in read_banking77("test")]
    spelled = numpy.array([unknown_id not in bundle.token_ids(text)[0] for text in texts])
    assert spelled.mean() > 0.9
    expected = numpy.stack([bundle.predict_proba([text])[0] for text in texts])
    got = text_model.predict_proba(texts)
    drift = numpy.abs(got - expected).max(axis=1)
    assert drift[spelled].max() < 1e-4 and (got.argmax(1) == expected.argmax(1))[spelled].all()
    assert (drift[~spelled] > 1e-4).any()  # the documented difference is real, and confined to those texts
    assert text_model.predict(["I lost my card"], top_k=2) == bundle.predict(["I lost my card"], top_k=2)


def test_texts_longer_than_max_length_are_truncated_as_the_python_runtime_does(bundles):
    bundle = Bundle.load(bundles[0])
    long_text = " ".join(row["text"] for row in read_banking77("test")[:40])  # far past max_length tokens
    assert len(bundle.token_ids(long_text)[0]) == bundle.max_length
    numpy.testing.assert_allclose(bundle.text_model().predict_proba([long_text]), bundle.predict_proba([long_text]),
                                  atol=1e-4)


def test_a_changed_text_model_is_refused(bundles, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundles[0], copy)
    with open(copy / TEXT_MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=TEXT_MODEL_FILE):
        Bundle.load(copy)


def test_a_bundle_without_a_text_model_says_how_to_get_one(bundles):
    with pytest.raises(BundleError, match="--tokenizer-in-graph"):
        Bundle.load(bundles[1]).text_model()


def test_without_the_extensions_package_the_error_says_what_to_install(bundles):
    script = (f"import sys; sys.modules['onnxruntime_extensions'] = None\n"
              f"from edgetune_runtime.bundle import Bundle\n"
              f"from edgetune_runtime.errors import InputError\n"
              f"bundle = Bundle.load({str(bundles[0])!r})\n"
              f"print(bundle.predict(['I lost my card'])[0][0].label != '')\n"
              f"try:\n    bundle.text_model()\nexcept InputError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO_ROOT / "runtime")}, check=True)
    assert result.stdout.splitlines() == ["True", "the bundle's text model needs onnxruntime-extensions: pip install "
                                          "'edgetune-runtime[extensions]' (or onnxruntime-extensions)"]


def test_a_tokenizer_the_op_cannot_reproduce_is_refused_in_one_line(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    bpe.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(EdgetuneError, match="supports BERT WordPiece tokenizers .* not BPE/None/ByteLevel"):
        tokenizer_op_attributes(tmp_path / "tokenizer.json", 64)


def test_uncased_tokenizers_strip_accents_as_the_rust_tokenizer_does(tiny_export_dir):
    attributes = tokenizer_op_attributes(tiny_export_dir / "tokenizer.json", 64)
    assert (attributes["do_lower_case"], attributes["strip_accents"], attributes["max_length"]) == (1, 1, 64)
    assert (attributes["cls_token"], attributes["sep_token"]) == ("[CLS]", "[SEP]")


def test_chat_bundles_refuse_the_option():
    from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig

    with pytest.raises(ConfigError, match="tokenizer_in_graph: classifiers only"):
        GenerationBundleConfig(tokenizer_in_graph=True)
