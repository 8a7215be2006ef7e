"""`export_chat`: a Hugging Face chat model in, a KV-cache ONNX directory out, gated on greedy parity with PyTorch.

The fp32 graph is always built first and must reproduce PyTorch's greedy tokens on real held-out
prompts (`parity.py`); with `precision: int4` the int4 graph is built after it from the same model,
loaded, and scored against it. The output is the builder's directory (graph, `genai_config.json`
with the chosen context, tokenizer files, chat template, the builder's log) plus `edgetune.json`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory
from edgetune.configuration import config_to_dict
from edgetune.errors import EdgetuneError
from edgetune.export.parity import ParityError
from edgetune.scratch import scratch_directory
from edgetune.stage_manifest import MANIFEST, manifest_sha256, read_stage_manifest, write_stage_manifest
from edgetune.tasks.text_generation import TEXT_GENERATION
from edgetune.tasks.text_generation.builder import (
    BUILDER_LOG,
    chat_template_of,
    graph_size_mb,
    load_build,
    run_model_builder,
    set_context_length,
)
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.heldout import heldout_conversations
from edgetune.tasks.text_generation.parity import ChatParityReport, compare_greedy
from edgetune.tasks.text_generation.scoring import encode_conversations, spread, teacher_forced
from edgetune.tasks.text_generation.variants import INT4_BUILDER_OPTIONS

log = logging.getLogger(__name__)


@dataclass
class ChatExportResult:
    output_dir: Path
    variant: str
    parity: ChatParityReport
    metrics: dict


def export_chat(model_dir: str | Path, output_dir: str | Path, config: ChatExportConfig, *, force: bool = False
                ) -> ChatExportResult:
    """Build `model_dir` with onnxruntime-genai's builder and write it to `output_dir` if it passes parity.

    `model_dir` is a Hugging Face causal-LM directory (an `edgetune finetune --task chat` output), a
    packaged model id or a GGUF file (converted to a directory once, see `edgetune.models.gguf_dir`).

    Parity prompts are `config.validation`'s conversations, else the validation split `model_dir`
    was fine-tuned on. Nothing is written when a build fails, does not load, or fails the gate.
    """
    from edgetune.models.gguf_dir import resolve_model_directory

    # A packaged id or a .gguf becomes its (cached) Hugging Face directory: the builder reads only those.
    model_dir, output_dir = resolve_model_directory(model_dir).path, Path(output_dir)
    model_config = check_chat_model_dir(model_dir)
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")
    positions = model_config.get("max_position_embeddings")
    if positions and config.context_length > int(positions):
        raise EdgetuneError(f"context_length: {config.context_length} is over the {positions} positions {model_dir} "
                            f"was built for (config.json max_position_embeddings); lower it")
    source_manifest = read_stage_manifest(model_dir)
    examples = spread(heldout_conversations(model_dir, "validation", file=config.validation), config.parity_prompts)
    if not examples:
        raise EdgetuneError(f"{config.validation or model_dir}: no held-out conversations to check parity on; pass "
                            "a validation file with some")

    from edgetune.tasks.text_generation.chat_models import TorchChatModel

    reference = TorchChatModel(model_dir)
    conversations = encode_conversations(reference.tokenizer, examples, reference.stop_ids, config.context_length)

    with scratch_directory("chat-export") as scratch:
        fp32_dir = build_chat_graph(model_dir, scratch / "fp32", "fp32", {}, config.context_length, scratch / "cache")
        decoder = load_build(fp32_dir, threads=0)  # nothing is timed here: every core scores
        parity = compare_greedy(reference, decoder, conversations, config.parity_new_tokens, config.tie_tolerance)
        fp32_scores = teacher_forced(decoder, conversations)
        parity.teacher_forced_agreement = round(fp32_scores.agreement(teacher_forced(reference, conversations)), 6)
        log.info("parity of the fp32 graph: %s", parity.describe())
        if not parity.passed:
            raise ParityError(f"export refused: the ONNX graph's greedy tokens differ from PyTorch's: "
                              f"{parity.describe()}; nothing was written")
        del reference  # the int4 build below is a subprocess of its own; free PyTorch's copy first
        metrics = {"parity": parity.to_dict(), "perplexity": round(fp32_scores.perplexity, 4),
                   "scored_conversations": len(conversations)}
        built, variant = fp32_dir, "fp32"
        if config.precision == "int4":
            variant = f"int4-block{config.int4_block_size}"
            # The options of quantize's int4 variants (embeddings quantised too), with this block size and level.
            options = {**INT4_BUILDER_OPTIONS, "int4_block_size": config.int4_block_size,
                       "int4_accuracy_level": config.int4_accuracy_level}
            built = build_chat_graph(model_dir, scratch / variant, "int4", options, config.context_length,
                                     scratch / "cache")
            int4_scores = teacher_forced(load_build(built, threads=0), conversations)
            metrics |= {"perplexity": round(int4_scores.perplexity, 4),
                        "fp32_perplexity": round(fp32_scores.perplexity, 4),
                        "agreement_with_fp32": round(int4_scores.agreement(fp32_scores), 6)}
        metrics["size_mb"] = graph_size_mb(built, decoder.layout.model_file)
        with atomic_directory(output_dir, overwrite=force) as staging:
            copy_build(built, staging)
            write_stage_manifest(staging, "export", TEXT_GENERATION, {
                "variant": variant,
                **chat_artifact_record(model_dir, source_manifest, config.context_length),
                "builder": {"precision": config.precision,
                            "int4_block_size": config.int4_block_size if config.precision == "int4" else None,
                            "int4_accuracy_level": config.int4_accuracy_level if config.precision == "int4" else None},
                "config": config_to_dict(config),
                "evaluated_on": sorted({example.source for example in examples}),
                "metrics": metrics,
            })
    return ChatExportResult(output_dir, variant, parity, metrics)


def check_chat_model_dir(model_dir: Path) -> dict:
    """config.json of a causal LM with weights and a chat template, or a one-line error saying what is missing."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise EdgetuneError(f"{model_dir}: no config.json; pass a Hugging Face causal-LM directory (an `edgetune "
                            "finetune --task chat` output)")
    model_config = json.loads(config_path.read_text(encoding="utf-8"))
    if not any(str(name).endswith("ForCausalLM") for name in model_config.get("architectures") or ()):
        raise EdgetuneError(f"{config_path}: architectures {model_config.get('architectures')} has no *ForCausalLM; "
                            "chat export needs a causal language model")
    if chat_template_of(model_dir) is None:
        raise EdgetuneError(f"{model_dir}: the tokenizer has no chat template (tokenizer_config.json chat_template "
                            "or chat_template.jinja); add the template the model was trained with")
    return model_config


def build_chat_graph(model_dir: Path, output_dir: Path, precision: str, extra_options: dict, context_length: int,
                     cache_dir: Path) -> Path:
    """One builder run with its log beside the graph and the context set: the unit export and quantize share."""
    output_dir.mkdir(parents=True)
    log.info("building %s (%s, %s)", output_dir.name, precision, extra_options or "default options")
    run_model_builder(model_dir, output_dir, precision, extra_options, cache_dir, output_dir / BUILDER_LOG)
    set_context_length(output_dir, context_length)
    return output_dir


def copy_build(build_dir: Path, staging: Path) -> None:
    for path in build_dir.iterdir():
        if path.is_file() and path.name != MANIFEST:
            shutil.copy2(path, staging / path.name)


def chat_artifact_record(model_dir: Path, source_manifest: dict, context_length: int) -> dict:
    """Manifest entries every chat ONNX artifact carries (the contract): where it came from and how it is prompted."""
    data = source_manifest.get("data")
    recorded_prompt = ((data or {}).get("config") or {}).get("system_prompt")
    return {
        "source_model": str(model_dir.resolve()),
        "source_model_manifest_sha256": manifest_sha256(model_dir),
        # The pretrained model it was fine-tuned from (the bundle's model card names it), or, for a model
        # directory edgetune did not write, the directory itself.
        "base_model": source_manifest.get("base_model") or {"name": model_dir.resolve().name},
        "data": data,
        "system_prompt": source_manifest.get("system_prompt", recorded_prompt),
        "max_length": source_manifest.get("max_length"),
        "context_length": context_length,
    }
