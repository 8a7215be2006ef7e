"""ONNX export: dynamic axes, the parity gate on held-out text, graph fusions, atomic output."""

from __future__ import annotations

import json

import numpy
import onnxruntime
import pytest

from edgetune.errors import ConfigError
from edgetune.export.config import ExportConfig
from edgetune.export.onnx_export import export_onnx
from edgetune.export.parity import ParityError


def test_export_passes_parity_and_records_it(tiny_export_dir):
    manifest = json.loads((tiny_export_dir / "edgetune.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["argmax_agreement"] == 1.0
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["parity"]["texts_compared"] == 8  # the validation split carved at fine-tuning
    assert manifest["graph"]["opset"] >= 17
    input_shapes = {i["name"]: i["shape"] for i in manifest["graph"]["inputs"]}
    assert all(isinstance(dim, str) for shape in input_shapes.values() for dim in shape), "axes must be dynamic"
    assert manifest["labels"] == json.loads((tiny_export_dir / "edgetune.json").read_text())["labels"]
    assert (tiny_export_dir / "tokenizer.json").is_file()


def test_transformer_fusions_apply_and_shrink_the_graph(tiny_export_dir):
    manifest = json.loads((tiny_export_dir / "edgetune.json").read_text())
    assert manifest["optimized"]
    assert manifest["fusions"].get("Attention") == 2 and manifest["fusions"].get("SkipLayerNormalization", 0) >= 2
    exported, final = manifest["op_counts"]["exported"], manifest["op_counts"]["final"]
    assert sum(final.values()) < sum(exported.values()) / 3
    assert "Attention" in final and "Softmax" not in final


def test_dynamic_batch_and_sequence_axes_run(tiny_export_dir):
    session = onnxruntime.InferenceSession(str(tiny_export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 5), (3, 17)):
        feed = {i.name: numpy.ones((batch, length), dtype=numpy.int64) for i in session.get_inputs()}
        assert session.run(None, feed)[0].shape == (batch, 4)


def test_parity_gate_fails_loudly_and_writes_nothing(tmp_path, tiny_finetuned_dir):
    # No fp32 graph reproduces PyTorch to 1e-15: the gate must refuse it.
    with pytest.raises(ParityError, match="argmax agreement .* max \\|logit diff\\|"):
        export_onnx(tiny_finetuned_dir, tmp_path / "strict", ExportConfig(max_abs_diff=1e-15, optimize=False))
    assert not (tmp_path / "strict").exists()
    assert list(tmp_path.iterdir()) == []


def test_export_with_an_explicit_texts_file(tmp_path, tiny_finetuned_dir, small_banking77):
    result = export_onnx(tiny_finetuned_dir, tmp_path / "x", ExportConfig(optimize=False, parity_texts=20),
                         texts_file=str(small_banking77["test"]))
    assert result.parity.texts_compared == 20 and not result.optimized


def test_opset_below_17_is_refused():
    with pytest.raises(ConfigError, match="opset"):
        ExportConfig(opset=13)
