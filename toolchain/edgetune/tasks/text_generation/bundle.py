"""Bundling a chat model's ONNX artifact: its files, the `generation` section and the golden prompts.

The artifact is the builder's directory (model.onnx + model.onnx.data, genai_config.json, tokenizer
files, chat template) with an edgetune.json from export or quantize. The bundle gets the graph and
its data, genai_config.json with the bundle's context (it sizes the KV cache), tokenizer.json, and a
section the runtime reads (schema: edgetune_runtime/tasks/generation/section.py), whose chat format
is derived from the template and checked against it here (chat_format.py). Golden prompts are
held-out conversations; their greedy tokens are computed by the runtime's own `GenerationBundle`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig
from edgetune_runtime.tasks.generation.decoder import GENAI_CONFIG

IM_END = "<|im_end|>"
"""The end-of-turn token of ChatML templates (SmolLM2, Qwen): an answer ends there."""
GOLDEN_RECORDED_FACTOR = 2
"""Golden prompts record twice the tokens a device must match, so a mismatch report shows where it drifts."""


@dataclass(frozen=True)
class GoldenPrompt:
    messages: list[dict[str, str]]
    """The conversation up to the user turn the model answers."""
    tokens: int
    """Greedy tokens to record."""


def golden_prompts(record: dict, source_dir: Path, config: GenerationBundleConfig) -> list[GoldenPrompt]:
    """`config.golden_examples` held-out prompts, one intent after another so they cover different requests."""
    from edgetune.tasks.text_generation.heldout import heldout_conversations

    overrides = {key: value for key, value in (("prompt_column", config.text_column),
                                               ("intent_column", config.label_column)) if value is not None}
    examples = heldout_conversations(source_dir, "validation", file=config.validation,
                                     config_overrides=overrides or None)
    by_intent: dict[str, list] = {}
    for example in examples:
        by_intent.setdefault(example.intent or "", []).append(example)
    chosen: list = []
    while len(chosen) < config.golden_examples and any(by_intent.values()):
        for intent in sorted(by_intent):
            if by_intent[intent] and len(chosen) < config.golden_examples:
                chosen.append(by_intent[intent].pop(0))
    tokens = config.golden_prefix_tokens * GOLDEN_RECORDED_FACTOR
    return [GoldenPrompt([dict(message) for message in example.messages[:-1]], tokens) for example in chosen]


def bundle_files(record: dict, source_dir: Path, staging: Path, config: GenerationBundleConfig) -> dict:
    """Copy the decoder's files into `staging` and return the `generation` section."""
    from transformers import AutoTokenizer

    from edgetune.tasks.text_generation.chat_format import check_chat_format, derive_chat_format
    from edgetune_runtime.external_data import external_data_files, resolve_location

    genai_path = source_dir / GENAI_CONFIG
    if not genai_path.is_file():
        raise EdgetuneError(f"{source_dir}: no {GENAI_CONFIG}; a chat bundle is built from the ONNX artifact of "
                            "`edgetune export` (onnxruntime-genai's builder layout)")
    genai = json.loads(genai_path.read_text(encoding="utf-8"))
    model_context = int(genai["model"]["context_length"])
    context_length = config.context_length or model_context
    if context_length > model_context:
        raise EdgetuneError(f"context_length: {context_length} is longer than the model's {model_context} "
                            f"({genai_path}); choose at most {model_context}")
    if config.max_new_tokens >= context_length:
        raise EdgetuneError(f"max_new_tokens: {config.max_new_tokens} leaves no room for a prompt in the context of "
                            f"{context_length}; lower it or raise context_length")
    # The builder pre-allocates its cache to search.max_length: the bundle's context keeps it (and ours) small.
    genai["model"]["context_length"] = context_length
    genai.setdefault("search", {})["max_length"] = context_length
    (staging / GENAI_CONFIG).write_text(json.dumps(genai, indent=4) + "\n", encoding="utf-8")
    for _, location in external_data_files(source_dir / genai["model"]["decoder"]["filename"]):
        name = resolve_location(genai["model"]["decoder"]["filename"], location)
        if name is None or not (source_dir / name).is_file():
            raise EdgetuneError(f"{source_dir}: the graph reads its weights from {location!r}, which is not there")
        if not (staging / name).exists():
            shutil.copyfile(source_dir / name, staging / name)

    tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
    chat_format = derive_chat_format(tokenizer, str(source_dir))
    prompts = golden_prompts(record, source_dir, config)
    check_chat_format(chat_format, tokenizer, [prompt.messages for prompt in prompts], str(source_dir))
    return {
        "genai_config": GENAI_CONFIG,
        "chat_template": tokenizer.chat_template,
        "chat_format": chat_format.to_dict(),
        "system_prompt": _system_prompt(record),
        "max_new_tokens": config.max_new_tokens,
        "context_length": context_length,
        "stop_token_ids": _stop_token_ids(tokenizer, genai),
        "stop_strings": [],
        "sampling": _sampling_defaults(source_dir, record),
        "golden_prefix_tokens": config.golden_prefix_tokens,
    }


def _system_prompt(record: dict) -> str | None:
    if "system_prompt" in record:
        return record["system_prompt"]
    return ((record.get("data") or {}).get("config") or {}).get("system_prompt")


def _stop_token_ids(tokenizer, genai: dict) -> list[int]:
    """The end-of-turn token and the model's end-of-sequence ids: an answer ends at whichever comes first."""
    eos = genai["model"].get("eos_token_id", [])
    ids = {int(token) for token in (eos if isinstance(eos, list) else [eos])}
    im_end = tokenizer.convert_tokens_to_ids(IM_END) if IM_END in tokenizer.get_vocab() else None
    if im_end is not None:
        ids.add(int(im_end))
    if not ids:
        raise EdgetuneError(f"the model names no end-of-sequence token and has no {IM_END}; a chat bundle needs one "
                            "to know where an answer ends")
    return sorted(ids)


def _sampling_defaults(source_dir: Path, record: dict) -> dict:
    """The model's generation_config.json settings when it samples; greedy otherwise (what most chat
    models ship, SmolLM2 included)."""
    candidates = [source_dir / "generation_config.json"]
    for key in ("source_model", "model"):
        if isinstance(record.get(key), str):
            candidates.append(Path(record[key]) / "generation_config.json")
    settings = next((json.loads(path.read_text(encoding="utf-8")) for path in candidates if path.is_file()), {})
    penalty = float(settings.get("repetition_penalty") or 1.0)
    if not settings.get("do_sample"):
        return {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": penalty}
    return {"temperature": float(settings.get("temperature", 1.0)), "top_p": float(settings.get("top_p", 1.0)),
            "top_k": int(settings.get("top_k", 0) or 0), "repetition_penalty": penalty}


def golden_examples(runtime_bundle, prompts: list[GoldenPrompt]) -> list[dict]:
    """Each prompt with the greedy token ids the runtime answers it with (prompts too long for the context skipped)."""
    from edgetune_runtime.errors import InputError

    golden = []
    for prompt in prompts:
        try:
            token_ids = runtime_bundle.greedy_token_ids(prompt.messages, prompt.tokens)
        except InputError:
            continue
        golden.append({"messages": prompt.messages, "token_ids": token_ids})
    if not golden:
        raise EdgetuneError(f"none of the {len(prompts)} golden prompts fits the context of "
                            f"{runtime_bundle.context_length} tokens; raise context_length or pass --validation "
                            "with shorter conversations")
    return golden


def card_measured(manifest: dict, variants: dict[str, dict] | None) -> list[str]:
    """A quality-versus-speed table: one row per variant the quantize report measured, else this bundle's metrics."""
    this_variant = manifest["tuned_for"].get("variant", "fp32")
    if not (isinstance(variants, dict) and all(isinstance(row, dict) for row in variants.values())):
        variants = None  # a report of another shape: this bundle's own figures instead
    rows = variants or ({this_variant: manifest.get("metrics")} if manifest.get("metrics") else {})
    rows = {name: {key: value for key, value in (row or {}).items() if isinstance(value, int | float)
                   and not isinstance(value, bool)} for name, row in rows.items()}
    columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    if not columns:
        return ["No quality or speed figures were recorded for this model."]
    lines = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        marker = " (this bundle)" if name == this_variant else ""
        cells = [f"{row[key]:.4g}" if key in row else "—" for key in columns]
        lines.append(f"| {name}{marker} | " + " | ".join(cells) + " |")
    return [*lines, "", "Quality on held-out conversations; speed at batch 1 on the CPU above."]


def card_usage(manifest: dict) -> list[str]:
    return ["print(bundle.generate('Where is my order?').text)",
            "for piece in bundle.stream([{'role': 'user', 'content': 'I want a refund'}]):",
            "    print(piece, end='', flush=True)"]
