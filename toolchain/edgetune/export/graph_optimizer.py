"""ONNX Runtime's transformer optimiser: fuse attention, GELU and embeddings (not skip-LayerNorm)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# The optimiser knows a handful of graph families; encoders of the BERT family share its patterns.
_OPTIMIZER_MODEL_TYPE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert",
                         "distilbert": "bert", "mpnet": "bert", "deberta-v2": "bert", "gpt2": "gpt2"}


def op_counts(onnx_path: Path) -> dict[str, int]:
    """How many nodes of each op type the graph holds (what per-call overhead scales with)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def optimize_transformer_graph(source: Path, destination: Path, model_type: str, num_heads: int,
                               hidden_size: int) -> dict[str, int]:
    """Write the fused graph to `destination`; return the fusions that applied (op type -> count)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fusion_options = FusionOptions(_OPTIMIZER_MODEL_TYPE.get(model_type, "bert"))
    # ORT's SkipLayerNormalization kernel is slower than the Add and LayerNormalization it replaces
    # on short inputs (measured: see edgetune.onnx_session.FAST_SESSION_TUNING).
    fusion_options.enable_skip_layer_norm = False
    optimized = optimize_model(
        str(source),
        model_type=_OPTIMIZER_MODEL_TYPE.get(model_type, "bert"),
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,  # pattern fusions only: ORT's own level-1/2 passes run at session start on the device
        use_gpu=False,
        optimization_options=fusion_options,
    )
    optimized.save_model_to_file(str(destination))
    statistics = optimized.get_fused_operator_statistics()
    return {name: int(count) for name, count in sorted(statistics.items()) if count}
