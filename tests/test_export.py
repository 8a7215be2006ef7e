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
    assert manifest["fusions"].get("Attention") == 2 and manifest["fusions"].get("BiasGelu") == 2
    # Skip-LayerNorm fusion stays off, in the graph and at session start: ORT's kernel measured slower.
    assert "SkipLayerNormalization" not in manifest["fusions"]
    assert "SkipLayerNormFusion" in manifest["session"]["disabled_optimizers"]
    exported, final = manifest["op_counts"]["exported"], manifest["op_counts"]["final"]
    assert sum(final.values()) < sum(exported.values()) / 3
    assert "Attention" in final and "Softmax" not in final


def test_last_layer_is_pruned_to_the_first_token_with_the_same_logits(tmp_path, tiny_finetuned_dir, tiny_export_dir,
                                                                       small_banking77):
    from transformers import AutoTokenizer

    from edgetune.export.parity import encode_batches, onnx_logits

    manifest = json.loads((tiny_export_dir / "edgetune.json").read_text())
    assert manifest["pruned_to_first_token"] and manifest["op_counts"]["final"]["Slice"] == 2
    unpruned = export_onnx(tiny_finetuned_dir, tmp_path / "unpruned", ExportConfig(prune_to_first_token=False))
    assert not unpruned.pruned_to_first_token and "Slice" not in unpruned.op_counts
    # Batches of mixed lengths (padding inside the batch) and batch 1 must give the same logits.
    texts = [row.split(",")[0] for row in small_banking77["test"].read_text().splitlines()[1:21]]
    tokenizer = AutoTokenizer.from_pretrained(tiny_export_dir)
    for batch_size in (1, 7):
        batches = encode_batches(tokenizer, texts, batch_size, 128)
        pruned_logits = onnx_logits(tiny_export_dir / "model.onnx", batches)
        full_logits = onnx_logits(tmp_path / "unpruned" / "model.onnx", batches)
        assert pruned_logits.shape == (20, 4)
        numpy.testing.assert_allclose(pruned_logits, full_logits, atol=1e-5)


def test_pruning_leaves_a_graph_without_fused_attention_alone(tmp_path, tiny_finetuned_dir):
    from edgetune.export.first_token import prune_to_first_token

    raw = export_onnx(tiny_finetuned_dir, tmp_path / "raw", ExportConfig(optimize=False))
    reason = prune_to_first_token(raw.output_dir / "model.onnx", tmp_path / "pruned.onnx")
    assert reason and "no fused attention" in reason and not (tmp_path / "pruned.onnx").exists()


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
    result = export_onnx(tiny_finetuned_dir, tmp_path / "x", ExportConfig(optimize=False, parity_texts=20,
                                                                          validation=str(small_banking77["test"])))
    assert result.parity.texts_compared == 20 and not result.optimized


def test_opset_below_17_is_refused():
    with pytest.raises(ConfigError, match="opset"):
        ExportConfig(opset=13)
