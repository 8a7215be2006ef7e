"""The quantised variants of a chat model: how each is built, from the fine-tuned model or the fp32 graph.

int4 variants are onnxruntime-genai builder runs (MatMulNBits, symmetric, int8 activations), built from
the Hugging Face model the fp32 export came from. The int8 variants quantise the fp32 graph's MatMuls with
onnxruntime's quantisers. On SmolLM2-135M's builder graph (16 Bitext validation answers; 1 thread, side by
side), 8-bit MatMulNBits weights kept perplexity at 7.27 against fp32's 7.24 at 103 tokens/s (fp32 38);
`quantize_dynamic` decoded faster, 121 tokens/s, but raised perplexity to 13.4 (11.7 per channel). Both are
offered and the quality budget decides: `int8` is the MatMulNBits one. Light: imported by the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ChatVariant:
    name: str
    description: str
    kind: Literal["builder", "matmul-nbits-int8", "dynamic-int8"]
    builder_options: dict[str, object] = field(default_factory=dict)


# The embedding table is not shared with the lm_head (NOTES pitfall 3), so the builder would leave it in fp32:
# 113 MB of SmolLM2's 200 MB int4 graph. Quantising its Gather too took the graph to 104 MB at the same
# perplexity (9.57 against 9.53; fp32 7.24).
INT4_BUILDER_OPTIONS = {"int4_accuracy_level": 4, "int4_op_types_to_quantize": "MatMul/Gather"}

CHAT_VARIANTS: dict[str, ChatVariant] = {variant.name: variant for variant in (
    ChatVariant("int4-block32", "builder int4 (weights and embeddings), 32-weight blocks, int8 activations",
                "builder", {**INT4_BUILDER_OPTIONS, "int4_block_size": 32}),
    # Tried on base SmolLM2 (16 Bitext validation answers, fp32 7.34) and left out: asymmetric uint4 in 32-blocks
    # (the GGUF's own Q4_1 layout) 10.12 (+38%), worse than symmetric's 9.71 (+32%); 16-blocks 9.51 (+30%) at
    # 125 MB against 104 MB. The int4 loss is the weights being rounded to 4 bits a second time (NOTES).
    # Level 4's int8 activations move greedy answers even when the weights are exact: on a quant_aware
    # int4-block32 model, 2 of 12 Bitext answers (96 tokens) equalled PyTorch's at level 4, 12 of 12 with fp32
    # activations, at 61 against 90 tokens/s (benchmarks/chat_int4_activations.py). Neither half alone
    # (level 1 only in the lm_head, or only outside it) fixed it: 4 and 5 of 16. Same file, same size.
    ChatVariant("int4-block32-fp32act", "int4-block32's weights with fp32 activations (accuracy level 1): a "
                "quant_aware model answers as its fp32 model does, at ~0.7x int4-block32's decode speed",
                "builder", {**INT4_BUILDER_OPTIONS, "int4_block_size": 32, "int4_accuracy_level": 1}),
    ChatVariant("int4-block128", "builder int4, 128-weight blocks: smaller, usually worse (NOTES: 9.60 ppl vs 8.02)",
                "builder", {**INT4_BUILDER_OPTIONS, "int4_block_size": 128}),
    # k_quant_last over rtn_last: SmolLM2 perplexity 9.25 against 9.65 (agreement 74.4% against 71.8%). With
    # an algo config the builder leaves the embedding Gather in fp32 (216 MB), whatever the op types say.
    ChatVariant("int4-int8head", "builder int4 (k-quant) with the lm_head in int8 (int4_algo_config=k_quant_last)",
                "builder", {**INT4_BUILDER_OPTIONS, "int4_block_size": 32, "int4_algo_config": "k_quant_last"}),
    ChatVariant("int8", "every MatMul of the fp32 graph as 8-bit MatMulNBits (block 128, symmetric, int8 activations)",
                "matmul-nbits-int8"),
    ChatVariant("int8-dynamic", "every MatMul of the fp32 graph in dynamic int8 (quantize_dynamic): faster than int8, "
                "much worse perplexity on SmolLM2", "dynamic-int8"),
)}

DEFAULT_CHAT_VARIANTS = ("int4-block32", "int4-int8head", "int8")
"""Block 128 lost quality everywhere it was measured (NOTES), so it is tried only when asked or with auto."""
