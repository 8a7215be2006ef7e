"""`quantize_chat`: build quantised variants of a chat export, score and time each, keep the fastest within budget.

Every variant is loaded (some builds exit 0 and do not load: NOTES pitfall 3) and scored on the same
held-out conversations as fp32: perplexity of the reference answers, next-token top-1 agreement with
fp32, size, first-token ms and decode tokens/s timed in alternating turns with fp32. The budget is one
number: the perplexity increase over fp32 in percent (`max_quality_drop`). Extra figures (intent
fidelity, ...) come from scorers registered with `register_variant_scorer`; they are reported, and a
scorer may veto a variant by returning `scorer_veto: True`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.configuration import config_to_dict
from edgetune.errors import EdgetuneError
from edgetune.quantize.run import LATENCY_TIE_FRACTION
from edgetune.scratch import scratch_directory
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest, write_stage_manifest
from edgetune.tasks.text_generation import TEXT_GENERATION
from edgetune.tasks.text_generation.builder import BUILDER_LOG, graph_size_mb, load_build
from edgetune.tasks.text_generation.decode_timing import time_decoders
from edgetune.tasks.text_generation.export import build_chat_graph, copy_build
from edgetune.tasks.text_generation.heldout import heldout_conversations
from edgetune.tasks.text_generation.quantize_config import ChatQuantizeConfig
from edgetune.tasks.text_generation.scoring import (
    HeldOutConversation,
    encode_conversations,
    spread,
    teacher_forced,
)
from edgetune.tasks.text_generation.variants import CHAT_VARIANTS, ChatVariant
from edgetune_runtime.atomic_write import current_umask
from edgetune_runtime.tasks.generation.decoder import Decoder

log = logging.getLogger(__name__)

VARIANTS_REPORT = "variants.json"

VariantScorer = Callable[[str, Decoder, list[HeldOutConversation], object], dict]
"""(variant name, its decoder, the scored conversations, the tokenizer) -> figures added to its row."""
_VARIANT_SCORERS: dict[str, VariantScorer] = {}


def register_variant_scorer(name: str, scorer: VariantScorer) -> None:
    """Score every variant (fp32 included) with `scorer` too; registering a name again replaces it."""
    _VARIANT_SCORERS[name] = scorer


def quantize_chat(onnx_dir: str | Path, output_dir: str | Path, config: ChatQuantizeConfig, *, force: bool = False,
                  scorers: Mapping[str, VariantScorer] | None = None) -> dict:
    """Build `config.variants` of the fp32 chat export `onnx_dir`, write the one kept to `output_dir`.

    Returns the report also written as `variants.json`: one row per variant and which was kept and why.
    Refuses (nothing written) when no variant is within the budget and faster than fp32.
    """
    onnx_dir, output_dir = Path(onnx_dir), Path(output_dir)
    manifest = _fp32_export_manifest(onnx_dir)
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")
    model_dir = Path(manifest["source_model"])
    if not (model_dir / "config.json").is_file():
        raise EdgetuneError(f"{onnx_dir / 'edgetune.json'}: the source model {model_dir} is not on this machine; "
                            "int4 variants are built from it: re-export from a model directory here")
    if manifest_sha256(model_dir) != manifest.get("source_model_manifest_sha256"):
        raise EdgetuneError(f"{model_dir}: its edgetune.json changed since {onnx_dir} was exported from it; "
                            "re-export it so the variants and the fp32 reference come from the same model")
    context_length = int(manifest["context_length"])
    examples = heldout_conversations(model_dir, "validation", file=config.validation)
    if not examples:
        raise EdgetuneError(f"{config.validation or model_dir}: no held-out conversations to score on")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
    fp32 = load_build(onnx_dir, config.threads)
    stop_ids = fp32.layout.eos_token_ids or (tokenizer.eos_token_id,)
    conversations = encode_conversations(tokenizer, spread(examples, config.score_prompts), stop_ids, context_length)
    timing_prompts = [c.prompt_ids for c in spread(conversations, config.timing_prompts)]
    longest = max(len(prompt) for prompt in timing_prompts) + config.timing_new_tokens
    if longest > context_length:
        prompt_tokens = longest - config.timing_new_tokens
        raise EdgetuneError(f"timing_new_tokens: {config.timing_new_tokens} tokens after a {prompt_tokens}-token "
                            f"prompt pass the export's context of {context_length}; lower it")
    scorers = dict(_VARIANT_SCORERS if scorers is None else scorers)
    if config.fidelity_prompts:
        from edgetune.tasks.text_generation.fidelity_scorer import intent_fidelity_scorer

        scorers["intent_fidelity"] = intent_fidelity_scorer(onnx_dir, config.fidelity_prompts,
                                                            config.fidelity_new_tokens, config.max_fidelity_drop)

    fp32_scores = teacher_forced(fp32, conversations)
    decoders = {"fp32": fp32}
    rows = {"fp32": {"description": "the export (reference)",
                     "size_mb": graph_size_mb(onnx_dir, fp32.layout.model_file),
                     "perplexity": round(fp32_scores.perplexity, 4), "agreement_with_fp32": 1.0,
                     **_extra_scores(scorers, "fp32", fp32, conversations, tokenizer)}}
    failures: dict[str, str] = {}
    with scratch_directory("chat-quantize") as scratch:
        built: dict[str, Path] = {}
        for name in config.variants:
            variant = CHAT_VARIANTS[name]
            try:
                built[name] = _build_variant(variant, model_dir, onnx_dir, scratch, context_length)
                decoder = load_build(built[name], config.threads)
            except EdgetuneError as error:  # a recipe this model cannot take is reported, not fatal
                log.warning("variant %s failed: %s", name, error)
                failures[name] = str(error)[:400]
                continue
            scores = teacher_forced(decoder, conversations)
            decoders[name] = decoder
            rows[name] = {"description": variant.description,
                          "size_mb": graph_size_mb(built[name], decoder.layout.model_file),
                          "perplexity": round(scores.perplexity, 4),
                          "agreement_with_fp32": round(scores.agreement(fp32_scores), 6),
                          **_extra_scores(scorers, name, decoder, conversations, tokenizer)}
        log.info("timing %d decoders side by side on %d prompts, %d new tokens, %d thread(s)", len(decoders),
                 len(timing_prompts), config.timing_new_tokens, config.threads)
        for name, timing in time_decoders(decoders, timing_prompts, config.timing_new_tokens).items():
            rows[name] |= timing
        judge_variants(rows, config)
        try:
            chosen = choose_variant(rows, config)
        except EdgetuneError:
            log.warning("\n%s", format_variant_table(rows, None))  # a refusal still shows the whole table
            raise
        report = {"chosen": chosen, "reason": _reason(rows[chosen], config), "variants": rows, "failed": failures,
                  "budget": _budget(config),
                  "scored_conversations": len(conversations), "timed_prompts": len(timing_prompts),
                  "config": config_to_dict(config)}
        with atomic_directory(output_dir, overwrite=force) as staging:
            copy_build(built[chosen], staging)
            write_json_atomic(staging / VARIANTS_REPORT, report)
            write_stage_manifest(staging, "quantize", TEXT_GENERATION, {
                "variant": chosen,
                "source_model": manifest["source_model"],
                "source_model_manifest_sha256": manifest.get("source_model_manifest_sha256"),
                "base_model": manifest.get("base_model"),
                # Not `source`: the bundle reads a chat artifact's data and metrics at the top level.
                "source_export": {"path": str(onnx_dir.resolve()), "manifest_sha256": manifest_sha256(onnx_dir)},
                "data": manifest.get("data"),
                "system_prompt": manifest.get("system_prompt"),
                "max_length": manifest.get("max_length"),
                "context_length": context_length,
                "config": config_to_dict(config),
                "metrics": rows[chosen] | {"fp32_perplexity": rows["fp32"]["perplexity"]},
            })
    return report


def _fp32_export_manifest(onnx_dir: Path) -> dict:
    manifest = read_stage_manifest(onnx_dir)
    if manifest.get("task") != TEXT_GENERATION or manifest.get("stage") != "export":
        raise EdgetuneError(f"{onnx_dir}: not an `edgetune export` of a chat model (edgetune.json stage "
                            f"{manifest.get('stage')!r}, task {manifest.get('task')!r}); export the model first")
    if manifest.get("variant") != "fp32":
        raise EdgetuneError(f"{onnx_dir}: is a {manifest.get('variant')} export; quantize starts from the fp32 "
                            "export (`edgetune export MODEL OUT --precision fp32`)")
    return manifest


def _build_variant(variant: ChatVariant, model_dir: Path, fp32_dir: Path, scratch: Path, context_length: int) -> Path:
    if variant.kind == "builder":
        return build_chat_graph(model_dir, scratch / variant.name, "int4", variant.builder_options, context_length,
                                scratch / "cache")
    destination = scratch / variant.name
    destination.mkdir()
    copy_build(fp32_dir, destination)
    (destination / BUILDER_LOG).unlink(missing_ok=True)
    quantize_int8_matmuls(fp32_dir, destination, variant.kind)
    return destination


def quantize_int8_matmuls(fp32_dir: Path, destination: Path, kind: str, model_file: str = "model.onnx") -> None:
    """Every MatMul with constant weights of the fp32 graph in int8: 8-bit MatMulNBits weights (block 128,
    symmetric) for `matmul-nbits-int8`, onnxruntime's `quantize_dynamic` for `dynamic-int8`.

    Block 128 rather than 32 for 8 bits: on SmolLM2 it decoded 103 against 83 tokens/s (fp32 38) with the
    same perplexity (7.27 against 7.28; fp32 7.24); 8-bit blocks lose little to their size, unlike int4's.

    The builder's fused ops (attention, normalisation) stay as they are; only MatMuls change, so the
    KV-cache inputs and outputs the runtime's `Decoder` drives are the fp32 graph's.
    """
    for path in destination.glob(f"{model_file}*"):
        path.unlink()
    if kind == "matmul-nbits-int8":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_dir / model_file)), bits=8, block_size=128,
                                         is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(destination / model_file), use_external_data_format=True)
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32_dir / model_file), str(destination / model_file), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True})
    # onnx writes the external weights owner-only; the artifact is read by whoever runs it.
    for path in destination.glob(f"{model_file}*"):
        path.chmod(0o666 & ~current_umask())


def _extra_scores(scorers: Mapping[str, VariantScorer], name: str, decoder: Decoder,
                  conversations: list[HeldOutConversation], tokenizer) -> dict:
    figures: dict = {}
    for scorer in scorers.values():
        figures |= scorer(name, decoder, conversations, tokenizer)
    return figures


def judge_variants(rows: dict[str, dict], config: ChatQuantizeConfig) -> None:
    """Add each row's changes against fp32 and whether it is within the budget and faster than fp32."""
    for name, row in rows.items():
        _judge(row, rows["fp32"], config, is_reference=name == "fp32")


def _judge(row: dict, reference: dict, config: ChatQuantizeConfig, is_reference: bool) -> None:
    row["perplexity_increase_pct"] = round(100 * (row["perplexity"] / reference["perplexity"] - 1), 3)
    row["agreement_drop_points"] = round(100 * (1 - row["agreement_with_fp32"]), 3)
    row["decode_speedup_vs_fp32"] = round(row["decode_tokens_per_s"] / reference["decode_tokens_per_s"], 3)
    # A registered scorer may have vetoed the variant already (its own `scorer_veto`).
    row["within_budget"] = (not row.get("scorer_veto", False)
                            and row["perplexity_increase_pct"] <= config.max_quality_drop)
    # A variant decoding slower than fp32 on this CPU is reported but never kept: it would only lose quality.
    row["slower_than_fp32"] = not is_reference and row["decode_tokens_per_s"] < reference["decode_tokens_per_s"]


def choose_variant(rows: dict[str, dict], config: ChatQuantizeConfig) -> str:
    """`config.keep`, or the fastest decoder within the budget (ties within a few percent: the better perplexity)."""
    if config.keep and not config.auto:
        if config.keep not in rows:
            raise EdgetuneError(f"keep: {config.keep} could not be built; see the failures above, or keep another")
        row = rows[config.keep]
        if row.get("scorer_veto"):
            fidelity = f" (intent fidelity {row['intent_fidelity']:.1%})" if "intent_fidelity" in row else ""
            raise EdgetuneError(f"keep: {config.keep} was vetoed by a quality scorer{fidelity}; raise "
                                "max_fidelity_drop or keep another")
        if not row["within_budget"]:
            raise EdgetuneError(f"keep: {config.keep} raises perplexity by {row['perplexity_increase_pct']}%, over "
                                f"the {config.max_quality_drop}% budget; raise max_quality_drop or keep another")
        return config.keep
    eligible = [name for name, row in rows.items()
                if name != "fp32" and row["within_budget"] and not row["slower_than_fp32"]]
    if not eligible:
        summary = ", ".join(f"{name} +{row['perplexity_increase_pct']}% ppl, {row['decode_speedup_vs_fp32']}x"
                            for name, row in rows.items() if name != "fp32")
        raise EdgetuneError(f"no variant is within the {config.max_quality_drop}% perplexity budget and faster than "
                            f"fp32 ({summary}); raise max_quality_drop or ship the fp32 export; nothing was written")
    fastest = max(rows[name]["decode_tokens_per_s"] for name in eligible)
    tied = [name for name in eligible if rows[name]["decode_tokens_per_s"] >= fastest * (1 - LATENCY_TIE_FRACTION)]
    return min(tied, key=lambda name: (rows[name]["perplexity"], rows[name]["size_mb"]))


def _budget(config: ChatQuantizeConfig) -> str:
    budget = f"perplexity increase over fp32 <= {config.max_quality_drop}%"
    if config.fidelity_prompts and config.max_fidelity_drop is not None:
        budget += (f", intent fidelity drop against fp32 <= {config.max_fidelity_drop} points "
                   f"({config.fidelity_prompts} prompts)")
    return budget


def _reason(row: dict, config: ChatQuantizeConfig) -> str:
    if config.keep and not config.auto:
        why = f"kept as asked (keep: {config.keep}), within the budget ({_budget(config)})"
    else:
        why = (f"fastest decoder within the budget ({_budget(config)}; ties within "
               f"{LATENCY_TIE_FRACTION:.0%} go to the lower perplexity)")
    return (f"{why}: {row['decode_tokens_per_s']} tokens/s "
            f"({row['decode_speedup_vs_fp32']}x fp32), perplexity +{row['perplexity_increase_pct']}%, "
            f"{row['size_mb']} MB")


def format_variant_table(rows: dict[str, dict], chosen: str | None) -> str:
    with_fidelity = any("intent_fidelity" in row for row in rows.values())
    header = (f"{'variant':<21}{'MB':>9}{'ppl':>10}{'Δppl %':>9}{'agree':>8}{'fidelity' if with_fidelity else '':>9}"
              f"{'tok/s':>9}{'1st ms':>9}{'speedup':>9}  note")
    lines = [header]
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["decode_tokens_per_s"]):
        note = [text for flag, text in ((name == chosen, "CHOSEN"), (row.get("scorer_veto"), "vetoed by fidelity"),
                                        (not row["within_budget"] and not row.get("scorer_veto"), "over budget"),
                                        (row["slower_than_fp32"], "slower than fp32")) if flag]
        fidelity = f"{row['intent_fidelity']:>9.1%}" if "intent_fidelity" in row else f"{'':>9}"
        lines.append(f"{name:<21}{row['size_mb']:>9.1f}{row['perplexity']:>10.3f}{row['perplexity_increase_pct']:>9.2f}"
                     f"{row['agreement_with_fp32']:>8.1%}{fidelity}{row['decode_tokens_per_s']:>9.1f}"
                     f"{row['first_token_ms']:>9.1f}{row['decode_speedup_vs_fp32']:>8.2f}x  {', '.join(note)}")
    return "\n".join(lines)
