"""`export_onnx`: a fine-tuned model directory in, a checked (and optimised) ONNX directory out."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory
from edgetune.configuration import config_to_dict
from edgetune.errors import EdgetuneError
from edgetune.export.config import ExportConfig
from edgetune.export.first_token import prune_to_first_token
from edgetune.export.heldout import heldout_split
from edgetune.export.parity import ParityError, ParityReport
from edgetune.onnx_session import FAST_SESSION_TUNING
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest, write_stage_manifest

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# Tokenizer and config files carried next to the graph, so the directory is self-contained.
_CARRIED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass
class ExportResult:
    output_dir: Path
    parity: ParityReport
    fusions: dict[str, int]
    op_counts: dict[str, int]
    optimized: bool
    pruned_to_first_token: bool = False


def export_onnx(model_dir: str | Path, output_dir: str | Path, config: ExportConfig, *,
                texts_file: str | None = None, force: bool = False) -> ExportResult:
    """Export `model_dir` to ONNX (dynamic batch and sequence axes) and refuse it unless it matches PyTorch.

    Parity is checked on real held-out text: the validation split recorded by `edgetune finetune`,
    or `texts_file`. With `config.optimize`, the fused graph must pass the same gate; if only the
    unfused graph does, the unfused graph is kept and the report says why.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise EdgetuneError(
            f"{model_dir}: not a model directory (no config.json); pass the output of `edgetune finetune`")
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")
    texts, _labels = heldout_split(model_dir, "validation", texts_file)
    texts = texts[: config.parity_texts]
    source_manifest = read_stage_manifest(model_dir)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.export.graph_optimizer import op_counts, optimize_transformer_graph
    from edgetune.export.parity import compare_logits, encode_batches, onnx_logits, torch_logits

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    max_length = int(source_manifest.get("training", {}).get("max_length") or min(tokenizer.model_max_length, 512))
    batches = encode_batches(tokenizer, texts, config.batch_size, max_length)
    reference = torch_logits(model, batches)

    with atomic_directory(output_dir, overwrite=force) as staging:
        raw_path = _optimum_export(model_dir, staging, config.opset)
        raw_parity = compare_logits(reference, onnx_logits(raw_path, batches, tuning=FAST_SESSION_TUNING),
                                    config.max_abs_diff)
        log.info("parity of the exported graph: %s", raw_parity.describe())
        if not raw_parity.passed:
            raise ParityError(f"export refused: ONNX output differs from PyTorch on {raw_parity.describe()}")
        raw_ops = op_counts(raw_path)
        final_parity, fusions, optimized, pruned = raw_parity, {}, False, False
        if config.optimize:
            fused_path = staging / "model.fused.onnx"
            fusions = optimize_transformer_graph(raw_path, fused_path, model.config.model_type,
                                                 getattr(model.config, "num_attention_heads", 0),
                                                 getattr(model.config, "hidden_size", 0))
            log.info("fusions applied: %s", ", ".join(f"{k} x{v}" for k, v in fusions.items()) or "none")
            candidates = [("optimised", fused_path, False)]
            if config.prune_to_first_token:
                pruned_path = staging / "model.pruned.onnx"
                skipped = prune_to_first_token(fused_path, pruned_path)
                if skipped:
                    log.info("last layer not pruned to the first token: %s", skipped)
                else:
                    candidates.insert(0, ("optimised and pruned to the first token", pruned_path, True))
            for description, candidate, candidate_pruned in candidates:
                parity = compare_logits(reference, onnx_logits(candidate, batches, tuning=FAST_SESSION_TUNING),
                                        config.max_abs_diff)
                log.info("parity of the %s graph: %s", description, parity.describe())
                if parity.passed:
                    pruned = candidate_pruned
                    candidate.replace(raw_path)
                    final_parity, optimized = parity, True
                    break
                log.warning("%s graph rejected by the parity gate", description)
            for _, candidate, _ in candidates:
                candidate.unlink(missing_ok=True)
            if not optimized:
                log.warning("keeping the unfused graph")
        final_ops = op_counts(raw_path)
        log.info("nodes: %d exported, %d final", sum(raw_ops.values()), sum(final_ops.values()))
        _write_manifest(staging, model_dir, source_manifest, config, max_length, final_parity, fusions,
                        raw_ops, final_ops, optimized, pruned)
    return ExportResult(output_dir, final_parity, fusions, final_ops, optimized, pruned)


def _optimum_export(model_dir: Path, staging: Path, opset: int) -> Path:
    from optimum.exporters.onnx import main_export

    scratch = staging / "optimum-export"
    main_export(str(model_dir), scratch, task="text-classification", opset=opset, do_validation=False,
                library_name="transformers", local_files_only=True)
    target = staging / MODEL_FILE
    (scratch / MODEL_FILE).replace(target)
    for name in _CARRIED_FILES:
        for folder in (scratch, model_dir):
            if (folder / name).is_file():
                shutil.copy2(folder / name, staging / name)
                break
    shutil.rmtree(scratch)
    return target


def graph_io(onnx_path: Path) -> dict:
    """Names, element types and shapes of the graph's inputs and outputs (dynamic axes by name)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)

    def describe(values) -> list[dict]:
        described = []
        for value in values:
            tensor = value.type.tensor_type
            shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
            described.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                              "shape": shape})
        return described

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output),
            "opset": max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))}


def _write_manifest(staging: Path, model_dir: Path, source_manifest: dict, config: ExportConfig, max_length: int,
                    parity: ParityReport, fusions: dict, raw_ops: dict, final_ops: dict, optimized: bool,
                    pruned: bool) -> None:
    import json

    model_config = json.loads((staging / "config.json").read_text())
    write_stage_manifest(staging, "export", "text-classification", {
        "source": {"path": str(model_dir), "manifest_sha256": manifest_sha256(model_dir),
                   "base_model": source_manifest.get("base_model"), "data": source_manifest.get("data"),
                   "metrics": source_manifest.get("metrics")},
        "config": config_to_dict(config),
        "graph": graph_io(staging / MODEL_FILE),
        "max_length": max_length,
        "labels": [model_config["id2label"][str(i)] for i in range(len(model_config["id2label"]))],
        "parity": parity.to_dict(),
        "optimized": optimized,
        "pruned_to_first_token": pruned,
        "fusions": fusions,
        "session": FAST_SESSION_TUNING,
        "op_counts": {"exported": raw_ops, "final": final_ops},
    })
