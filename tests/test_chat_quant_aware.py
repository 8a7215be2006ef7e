"""Quantisation-aware SFT (`quant_aware: int4-block32`): it trains the function the int4 export computes.

That claim rests on three checks: the rounding in the training forward is onnxruntime's own int4
rounding (bit for bit, through onnxruntime's public quantiser and a real session), the adapters still
learn through it, and the saved model's weights sit on the grid, so the int4 export rounds nothing.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
from test_chat_sft import _bitext, _tiny_config

from edgetune.data.chat_config import ChatDataConfig
from edgetune.tasks.text_generation.quant_aware import fake_quantize_int4, train_for_int4
from edgetune.tasks.text_generation.sft import finetune_chat


def _ort_int4(graph_op: str, weight: np.ndarray, block_size: int, feed: np.ndarray) -> np.ndarray:
    """Run `weight` through a one-node graph after onnxruntime's symmetric int4 quantiser (what the builder uses)."""
    if graph_op == "MatMul":
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(feed.shape))]
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.INT64, list(feed.shape))]
        node = helper.make_node("Gather", ["w", "x"], ["y"], axis=0)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                          op_types_to_quantize=(graph_op,), quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    quantized = quantizer.model.model
    assert {node.op_type for node in quantized.graph.node} == {"MatMulNBits" if graph_op == "MatMul"
                                                               else "GatherBlockQuantized"}
    session = onnxruntime.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": feed})[0]


@pytest.mark.parametrize("block_size", [32, 128])
def test_the_training_rounding_is_onnxruntimes_int4_matmul_rounding(block_size):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 256, generator=generator)  # a Linear's [out, in]; the MatMul holds its transpose
    x = np.eye(256, dtype=np.float32)  # the identity reads the dequantised weight back out of the session
    from_onnxruntime = _ort_int4("MatMul", weight.numpy().T.copy(), block_size, x)
    ours = fake_quantize_int4(weight, block_size).numpy().T
    np.testing.assert_allclose(ours, from_onnxruntime, rtol=0, atol=1e-6)
    assert not np.allclose(ours, weight.numpy().T, atol=1e-3)  # it did round


def test_the_training_rounding_is_onnxruntimes_int4_embedding_rounding():
    generator = torch.Generator().manual_seed(1)
    table = torch.randn(40, 96, generator=generator)
    ids = np.arange(40, dtype=np.int64).reshape(1, 40)
    from_onnxruntime = _ort_int4("Gather", table.numpy(), 32, ids)[0]
    np.testing.assert_array_equal(fake_quantize_int4(table, 32).numpy(), from_onnxruntime)


def test_rounding_twice_changes_nothing():
    weight = torch.randn(16, 100, generator=torch.Generator().manual_seed(2))  # 100: a short last block
    once = fake_quantize_int4(weight, 32)
    assert torch.equal(fake_quantize_int4(once, 32), once)
    assert torch.equal(fake_quantize_int4(torch.zeros(2, 64), 32), torch.zeros(2, 64))  # all-zero blocks stay zero


def test_adapters_learn_through_the_rounded_forward(tiny_chat_dir):
    from transformers import AutoModelForCausalLM

    from edgetune.finetune.config import LoraSettings
    from edgetune.finetune.lora import add_lora_adapters

    model = add_lora_adapters(AutoModelForCausalLM.from_pretrained(tiny_chat_dir), LoraSettings(dropout=0.0),
                              task_type="CAUSAL_LM")
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a non-zero B makes the merged weight differ from the base
            torch.nn.init.normal_(parameter, std=0.05)
    ids = torch.tensor([[1, 5, 9, 20, 33, 7]])
    plain = model(input_ids=ids).logits
    rounded_layers = train_for_int4(model, "int4-block32")
    assert rounded_layers == 2 * 7 + 2  # 7 adapted linears per layer, lm_head, embedding (tied: two modules)
    rounded = model(input_ids=ids, labels=ids)
    assert not torch.allclose(plain, rounded.logits, atol=1e-4)  # the forward really computes with int4 weights
    rounded.loss.backward()
    gradients = [p.grad for name, p in model.named_parameters() if "lora_" in name]
    assert gradients and all(g is not None and g.abs().sum() > 0 for g in gradients)

    # The rounded forward is the merged model with rounded weights: what the int4 export will run.
    merged = model.merge_and_unload()
    with torch.no_grad():
        for module in merged.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.copy_(fake_quantize_int4(module.weight, 32))
        for module in merged.modules():  # plain forwards again
            module.__dict__.pop("forward", None)
        torch.testing.assert_close(merged(input_ids=ids).logits, rounded.logits, atol=1e-4, rtol=1e-4)


def test_a_quant_aware_run_saves_weights_on_the_int4_grid(tmp_path, tiny_chat_dir):
    from safetensors.torch import load_file

    data = ChatDataConfig(train=str(_bitext(tmp_path)), system_prompt="You answer support questions.")
    output = tmp_path / "qat-model"
    finetune_chat(data, _tiny_config(tiny_chat_dir, quant_aware="int4-block32"), output)
    weights = load_file(output / "model.safetensors")
    checked = [name for name in weights if name.endswith("proj.weight") or "embed_tokens" in name]
    assert len(checked) == 2 * 7 + 1
    for name in checked:
        assert torch.equal(fake_quantize_int4(weights[name], 32), weights[name]), name
    base = load_file(tiny_chat_dir / "model.safetensors")
    assert not torch.equal(weights["model.layers.0.mlp.down_proj.weight"], base["model.layers.0.mlp.down_proj.weight"])


def test_full_fine_tuning_rounds_every_weight_and_trains_it(tiny_chat_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_dir)
    ids = torch.tensor([[3, 8, 13, 21, 34]])
    plain = model(input_ids=ids).logits.detach()
    assert train_for_int4(model, "int4-block128") == 2 * 7 + 2
    assert train_for_int4(AutoModelForCausalLM.from_pretrained(tiny_chat_dir), "off") == 0
    rounded = model(input_ids=ids, labels=ids)
    assert not torch.allclose(plain, rounded.logits, atol=1e-4)
    rounded.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.dim() == 2)
