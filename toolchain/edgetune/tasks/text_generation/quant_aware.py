"""Quantisation-aware fine-tuning for int4: train the model that the int4 export will actually run.

SmolLM2 reaches this machine de-quantised from Q4_1, and the builder's int4 rounds it to 4 bits a second
time, on a different grid: measured on the fine-tuned model, perplexity 2.97 in fp32 against 3.70 in int4
(+25%), and the answers lost the dataset's style (placeholder share 44% -> 0%) because the small LoRA update
is smaller than the rounding step. Keeping any one group of layers in fp32 recovered at most half of that
(MLP: 3.29), and only one group fits the 120 MB budget in int8.

So with `quant_aware` set, every forward pass during SFT uses the weights exactly as the int4 export will
hold them: symmetric, block-wise along the input dimension, the block's largest-magnitude weight mapped to
-8 (onnxruntime's `MatMulNBits`/`GatherBlockQuantized` quantiser; a test checks the two agree bit for bit),
with a straight-through gradient. The saved weights are left on that grid, like the "QAT" checkpoints
Gemma ships unquantised: quantising them again is lossless, so the fp32 model and its int4 export compute
the same function up to the int8 activations of accuracy level 4.

Why not torchao's QAT fake quantiser: the grid has to be onnxruntime's bit for bit, and torchao's symmetric
int4 (`choose_qparams_affine`, as we read it) divides the largest magnitude by 7.5 rather than mapping it to
-8, so its trained weights would be rounded once more at export. The rounding here is twenty lines, checked
against onnxruntime by the tests.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

QuantAwareTarget = Literal["off", "int4-block32", "int4-block128"]

BLOCK_SIZE_OF_TARGET = {"int4-block32": 32, "int4-block128": 128}
"""The quantisation variant (`edgetune quantize` names) a quantisation-aware run trains for, by block size."""


def fake_quantize_int4(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """`weight` rounded as onnxruntime's symmetric int4 block quantiser does it, blocks along the last dimension.

    A block's scale is its largest-magnitude value divided by -8, so that value is kept exactly and the rest
    round to the nearest of the 16 levels (-8..7 times the scale). Rows whose length is not a multiple of the
    block size end in a shorter block, as in onnxruntime.
    """
    import torch

    rows, columns = weight.shape
    padding = (-columns) % block_size
    padded = torch.nn.functional.pad(weight, (0, padding)) if padding else weight
    blocks = padded.reshape(rows, -1, block_size)
    largest = blocks.gather(-1, blocks.abs().argmax(dim=-1, keepdim=True))
    scale = largest / -8.0
    safe_scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    levels = torch.where(scale == 0, torch.zeros_like(blocks), torch.round(blocks / safe_scale).clamp(-8, 7))
    rounded = (levels * scale).reshape(rows, -1)
    return rounded[:, :columns] if padding else rounded


def _straight_through(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """The rounded weight in the forward pass, the identity in the backward pass (the usual QAT estimator)."""
    return weight + (fake_quantize_int4(weight.detach(), block_size) - weight).detach()


def train_for_int4(model: torch.nn.Module, target: QuantAwareTarget) -> int:
    """Make every linear layer and embedding of `model` compute with int4-rounded weights; returns how many.

    A LoRA-wrapped layer rounds its merged weight (base + adapter), since that merged weight is what gets
    exported. Instance forwards are replaced, so the model's classes and state dict are untouched.
    """
    if target == "off":
        return 0
    import torch
    from peft.tuners.lora import LoraLayer

    block_size = BLOCK_SIZE_OF_TARGET[target]
    # Inside a LoRA wrapper (its base layer, the adapter matrices) nothing is replaced: the wrapper's forward
    # computes with the merged weight and calls none of them.
    inside_wrappers = {id(inner) for module in model.modules() if isinstance(module, LoraLayer)
                       for inner in module.modules() if inner is not module}
    count = 0
    for module in model.modules():
        if id(module) in inside_wrappers:
            continue
        if isinstance(module, LoraLayer) and isinstance(module.base_layer, torch.nn.Linear):
            module.forward = types.MethodType(_lora_linear_forward(block_size), module)
        elif isinstance(module, torch.nn.Linear):
            module.forward = types.MethodType(_linear_forward(block_size), module)
        elif isinstance(module, torch.nn.Embedding):
            module.forward = types.MethodType(_embedding_forward(block_size), module)
        else:
            continue
        count += 1
    return count


def _linear_forward(block_size: int):
    import torch.nn.functional as F

    def forward(self, x):
        return F.linear(x, _straight_through(self.weight, block_size), self.bias)
    return forward


def _lora_linear_forward(block_size: int):
    import torch.nn.functional as F

    def forward(self, x, *args, **kwargs):
        weight = self.base_layer.weight
        for adapter in self.active_adapters:
            if adapter in self.lora_A:
                weight = weight + self.get_delta_weight(adapter)
        return F.linear(x, _straight_through(weight, block_size), self.base_layer.bias)
    return forward


def _embedding_forward(block_size: int):
    import torch.nn.functional as F

    def forward(self, input_ids):
        return F.embedding(input_ids, _straight_through(self.weight, block_size), self.padding_idx,
                           self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)
    return forward


def round_weights_to_int4(model: torch.nn.Module, target: QuantAwareTarget) -> int:
    """Leave every linear and embedding weight of a merged (plain transformers) model on the int4 grid.

    Tied weights (SmolLM2's embedding and lm_head) are one tensor and are rounded once; rounding is
    idempotent anyway (the largest value of a block stays, so the scale does too). Returns how many tensors.
    """
    if target == "off":
        return 0
    import torch

    block_size = BLOCK_SIZE_OF_TARGET[target]
    seen: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and id(module.weight) not in seen:
                seen.add(id(module.weight))
                module.weight.copy_(fake_quantize_int4(module.weight, block_size))
    return len(seen)
