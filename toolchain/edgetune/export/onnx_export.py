"""`export_onnx`: a model (fine-tuned here or anywhere) in, a checked (and optimised) ONNX directory out."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory
from edgetune.configuration import config_to_dict
from edgetune.errors import EdgetuneError
from edgetune.export.artifact import MODEL_FILE, default_max_length
from edgetune.export.config import ExportConfig
from edgetune.export.heldout import RecordedData, heldout_texts
from edgetune.export.parity import ParityError, ParityReport
from edgetune.models.resolve import ResolvedModel, resolve_model
from edgetune.onnx_session import FAST_SESSION_TUNING
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest, write_stage_manifest
from edgetune.tasks import Task, get_task, registered_tasks, task_for_model_config

log = logging.getLogger(__name__)

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


def export_onnx(model: str | Path, output_dir: str | Path, config: ExportConfig, *, force: bool = False
                ) -> ExportResult:
    """Export `model` to ONNX (dynamic batch and sequence axes) and refuse it unless it matches PyTorch.

    `model` is anything `edgetune.models` resolves: an `edgetune finetune` output, another local
    model directory, a packaged model or a hub id. Parity is checked on real held-out text:
    `config.validation`, else the validation split recorded by `edgetune finetune` (a model from
    elsewhere records none). With `config.optimize`, the fused graph must pass the same gate; if
    only the unfused graph does, the unfused graph is kept and the report says why.
    """
    output_dir = Path(output_dir)
    model_ref = _resolve_exportable(model)
    model_dir = model_ref.path
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")
    source_manifest = read_stage_manifest(model_dir)
    task = get_task(source_manifest.get("task") or _task_of_model(model_dir).name, where=str(model_dir))
    heldout = heldout_texts(config.validation, RecordedData(source_manifest.get("data"), model_dir),
                            "validation", "--validation", text_column=config.text_column,
                            label_column=config.label_column)
    texts = heldout.texts[: config.parity_texts]

    from transformers import AutoTokenizer

    from edgetune.export.graph_optimizer import op_counts, optimize_transformer_graph

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = task.load_model(model_dir)
    recorded_max_length = source_manifest.get("training", {}).get("max_length")
    max_length = int(recorded_max_length or default_max_length(tokenizer.model_max_length))
    batches = task.encode(tokenizer, texts, config.batch_size, max_length)
    reference = task.reference_outputs(model, batches)

    def gate(path: Path) -> ParityReport:
        return task.parity(reference, task.onnx_outputs(path, batches, FAST_SESSION_TUNING), config.max_abs_diff)

    with atomic_directory(output_dir, overwrite=force) as staging:
        raw_path = _optimum_export(model_dir, staging, config.opset, task.optimum_task)
        raw_parity = gate(raw_path)
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
                skipped = task.prune_graph(fused_path, pruned_path)
                if skipped:
                    log.info("last layer not pruned to the first token: %s", skipped)
                else:
                    candidates.insert(0, ("optimised and pruned to the first token", pruned_path, True))
            for description, candidate, candidate_pruned in candidates:
                parity = gate(candidate)
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
        _write_manifest(staging, model_ref, source_manifest, task, config, max_length, final_parity, fusions,
                        raw_ops, final_ops, optimized, pruned)
    return ExportResult(output_dir, final_parity, fusions, final_ops, optimized, pruned)


def _resolve_exportable(model: str | Path) -> ResolvedModel:
    """Local weights for `model`; a directory that is no model is refused before anything is resolved."""
    local = Path(model).expanduser()
    if local.is_dir() and not (local / "config.json").is_file():
        raise EdgetuneError(f"{local}: not a model directory (no config.json); pass the output of `edgetune "
                            "finetune`, another Hugging Face model directory, a packaged model or a hub id")
    model_ref = resolve_model(model)
    if model_ref.gguf_file:
        raise EdgetuneError(f"{model}: GGUF weights cannot be exported to ONNX; pass a Hugging Face model directory")
    return model_ref


def _task_of_model(model_dir: Path):
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    task = task_for_model_config(model_config)
    if task is None:
        raise EdgetuneError(f"{model_dir / 'config.json'}: cannot tell the model's task (architectures "
                            f"{model_config.get('architectures')}); edgetune exports {', '.join(registered_tasks())}")
    return task


def _optimum_export(model_dir: Path, staging: Path, opset: int, optimum_task: str) -> Path:
    from optimum.exporters.onnx import main_export

    scratch = staging / "optimum-export"
    main_export(str(model_dir), scratch, task=optimum_task, opset=opset, do_validation=False,
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


def _write_manifest(staging: Path, model_ref: ResolvedModel, source_manifest: dict, task: Task,
                    config: ExportConfig, max_length: int, parity: ParityReport, fusions: dict, raw_ops: dict,
                    final_ops: dict, optimized: bool, pruned: bool) -> None:
    model_config = json.loads((staging / "config.json").read_text())
    # A model edgetune did not train names itself as its base model and records no data.
    base_model = source_manifest.get("base_model") or {"name": model_ref.name, "source": model_ref.source,
                                                       "path": str(model_ref.path),
                                                       "weights_sha256": model_ref.weights_sha256}
    write_stage_manifest(staging, "export", task.name, {
        "source": {"path": str(model_ref.path), "manifest_sha256": manifest_sha256(model_ref.path),
                   "base_model": base_model, "data": source_manifest.get("data"),
                   "metrics": source_manifest.get("metrics")},
        "config": config_to_dict(config),
        "graph": graph_io(staging / MODEL_FILE),
        "max_length": max_length,
        **task.model_record(model_config),
        "parity": parity.to_dict(),
        "optimized": optimized,
        "pruned_to_first_token": pruned,
        "fusions": fusions,
        "session": FAST_SESSION_TUNING,
        "op_counts": {"exported": raw_ops, "final": final_ops},
    })
