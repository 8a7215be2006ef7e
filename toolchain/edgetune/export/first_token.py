"""Prune the last encoder layer to the one position a classifier reads.

A BERT-style classifier reads only the first token of the last layer (the pooler's `Gather` at
position 0), yet the exported graph computes the last layer's attention output projection,
LayerNorms and feed-forward block for every token. Everything between the last attention node and
that `Gather` is position-wise, so slicing the attention context and the residual to position 0
right after the attention computes the same logits with 1/sequence-length of that work (about a
sixth of a 6-layer model's matrix products at 13 tokens). The parity gate checks the result.
"""

from __future__ import annotations

from pathlib import Path

# Ops that act on each position separately (over the hidden axis at most): slicing the sequence
# before them cannot change what they compute for position 0.
_POSITION_WISE = {"MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Tanh", "Relu", "LayerNormalization",
                  "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "Cast", "Identity"}
_ATTENTION_OPS = {"Attention", "QAttention"}


def prune_to_first_token(source: Path, destination: Path) -> str | None:
    """Write the pruned graph to `destination` and return None, or return why the graph was left alone."""
    import numpy
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    nodes = list(graph.node)
    attention_positions = [i for i, node in enumerate(nodes) if node.op_type in _ATTENTION_OPS]
    if not attention_positions:
        return "no fused attention node (the optimiser did not fuse this architecture)"
    last = attention_positions[-1]
    attention = nodes[last]
    context, layer_input = attention.output[0], attention.input[0]

    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    constants.update({node.output[0]: numpy_helper.to_array(node.attribute[0].t)
                      for node in nodes if node.op_type == "Constant" and node.attribute[0].name == "value"})
    readers = [i for i, node in enumerate(nodes[last + 1:], start=last + 1) if _reads_first_position(node, constants)]
    if len(readers) != 1:
        return f"expected one Gather of position 0 after the last attention, found {len(readers)}"
    between = nodes[last + 1:readers[0]]
    mixing = sorted({node.op_type for node in between if node.op_type not in _POSITION_WISE
                     or (node.op_type == "LayerNormalization" and _axis(node) not in (-1, 2))})
    if mixing:
        return f"ops that mix positions sit between the last attention and the classifier: {', '.join(mixing)}"
    later_readers = [node for node in nodes[readers[0]:] if {context, layer_input} & set(node.input)]
    if later_readers:
        return "the last layer's input or attention output is read after the classifier's Gather"

    graph.initializer.extend([numpy_helper.from_array(numpy.array([value], numpy.int64), name) for name, value in
                              (("first_token/start", 0), ("first_token/end", 1), ("first_token/axis", 1))])
    slices = []
    for tensor in (context, layer_input):
        slices.append(helper.make_node("Slice", [tensor, "first_token/start", "first_token/end", "first_token/axis"],
                                       [f"{tensor}/first_token"], name=f"{tensor}/FirstToken"))
    for node in between:
        for index, name in enumerate(node.input):
            if name in (context, layer_input):
                node.input[index] = f"{name}/first_token"
    graph.ClearField("node")
    graph.node.extend(nodes[:last + 1] + slices + nodes[last + 1:])
    onnx.checker.check_model(model)
    onnx.save(model, str(destination))
    return None


def _axis(node) -> int:
    return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), -1)


def _reads_first_position(node, constants: dict) -> bool:
    if node.op_type != "Gather" or _axis(node) != 1 or node.input[1] not in constants:
        return False
    index = constants[node.input[1]]
    return index.ndim == 0 and int(index) == 0
