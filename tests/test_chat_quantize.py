"""Chat quantisation: every variant of the tiny Llama's export is built, loaded, scored and timed; the budget picks."""

from __future__ import annotations

import copy
import json
import re

import pytest
from click.testing import CliRunner
from test_chat_export import write_heldout_conversations

from edgetune.cli.main import cli
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest
from edgetune.tasks.text_generation.export import export_chat
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.quantize import (
    VARIANTS_REPORT,
    choose_variant,
    format_variant_table,
    judge_variants,
    quantize_chat,
)
from edgetune.tasks.text_generation.quantize_config import ChatQuantizeConfig
from edgetune.tasks.text_generation.variants import CHAT_VARIANTS
from edgetune_runtime.tasks.generation.decoder import Decoder


@pytest.fixture(scope="module")
def heldout_file(tmp_path_factory):
    return write_heldout_conversations(tmp_path_factory.mktemp("chat_quantize_heldout") / "heldout.csv")


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory, tiny_chat_dir, heldout_file):
    output = tmp_path_factory.mktemp("chat_quantize_export") / "onnx"
    export_chat(tiny_chat_dir, output, ChatExportConfig(validation=str(heldout_file), context_length=384,
                                                       parity_prompts=2, parity_new_tokens=8))
    return output


def _intent_count(name, decoder, conversations, tokenizer) -> dict:
    """A stand-in extra scorer: real decoding, a figure per variant (the evaluation engineer's hook)."""
    answers = [decoder.greedy(c.prompt_ids, 4) for c in conversations[:2]]
    return {"greedy_tokens_scored": sum(len(answer) for answer in answers)}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, fp32_export, heldout_file):
    output = tmp_path_factory.mktemp("chat_quantized") / "chosen"
    # The tiny model's weights are random, so any budget is arbitrary: a wide one keeps every variant within it.
    # Its decode speeds are call overhead (no variant is reliably faster than fp32 at this size), so the run
    # keeps a named variant; choosing by speed is tested on the table below.
    config = ChatQuantizeConfig(variants=tuple(CHAT_VARIANTS), keep="int4-block32", max_quality_drop=1000.0,
                                validation=str(heldout_file), score_prompts=6, timing_prompts=2, timing_new_tokens=8)
    report = quantize_chat(fp32_export, output, config, scorers={"intent": _intent_count})
    return output, report


def test_every_variant_loads_is_smaller_than_fp32_and_is_scored(quantized):
    output, report = quantized
    rows = report["variants"]
    assert not report["failed"]
    assert set(rows) == {"fp32", *CHAT_VARIANTS}
    for name, row in rows.items():
        assert row["perplexity"] > 1 and 0 <= row["agreement_with_fp32"] <= 1, name
        assert row["decode_tokens_per_s"] > 0 and row["first_token_ms"] > 0, name
        assert row["greedy_tokens_scored"] == 8, name  # the extra scorer ran on every variant
        if name != "fp32":
            assert row["size_mb"] < rows["fp32"]["size_mb"], name
    assert rows["fp32"]["agreement_with_fp32"] == 1.0 and rows["fp32"]["perplexity_increase_pct"] == 0
    assert rows["int8"]["agreement_with_fp32"] > rows["int4-block32"]["agreement_with_fp32"]
    # The same int4 weights, only the activations' precision differs.
    assert rows["int4-block32-fp32act"]["size_mb"] == pytest.approx(rows["int4-block32"]["size_mb"], abs=0.01)
    table = format_variant_table(rows, report["chosen"])
    assert re.search(rf"^{re.escape(report['chosen'])} .*CHOSEN", table, re.MULTILINE)


def test_the_chosen_variant_is_written_with_its_manifest(quantized, fp32_export):
    output, report = quantized
    manifest = read_stage_manifest(output)
    export_manifest = read_stage_manifest(fp32_export)
    assert (manifest["stage"], manifest["task"], manifest["variant"]) == ("quantize", "text-generation",
                                                                          report["chosen"])
    assert manifest["source_export"]["manifest_sha256"] == manifest_sha256(fp32_export)
    assert manifest["source_model"] == export_manifest["source_model"]
    assert manifest["metrics"]["perplexity"] == report["variants"][report["chosen"]]["perplexity"]
    assert json.loads((output / VARIANTS_REPORT).read_text())["chosen"] == report["chosen"]
    # A kept variant says it was asked for, not that it was the fastest.
    assert report["reason"].startswith("kept as asked (keep: int4-block32), within the budget (perplexity")
    genai = json.loads((output / "genai_config.json").read_text())
    assert genai["model"]["context_length"] == genai["search"]["max_length"] == 384
    Decoder.from_directory(output).greedy([1, 2, 3], 4)


def _rows(report, **changes) -> dict:
    rows = copy.deepcopy(report["variants"])
    for name, values in changes.items():
        rows[name].update(values)
    return rows


def test_the_budget_keeps_the_fastest_decoder_within_it_and_refuses_when_none_fits(quantized):
    _, report = quantized
    fp32 = report["variants"]["fp32"]
    rows = _rows(report,
                 **{"int4-block32": {"perplexity": fp32["perplexity"] * 1.30, "decode_tokens_per_s": 300.0},
                    "int4-block32-fp32act": {"perplexity": fp32["perplexity"] * 1.29, "decode_tokens_per_s": 200.0},
                    "int4-int8head": {"perplexity": fp32["perplexity"] * 1.10, "decode_tokens_per_s": 250.0},
                    "int4-block128": {"perplexity": fp32["perplexity"] * 1.50, "decode_tokens_per_s": 320.0},
                    "int8": {"perplexity": fp32["perplexity"] * 1.01, "decode_tokens_per_s": 150.0},
                    "int8-dynamic": {"perplexity": fp32["perplexity"] * 1.85, "decode_tokens_per_s": 400.0},
                    "fp32": {"decode_tokens_per_s": 100.0}})
    config = ChatQuantizeConfig(max_quality_drop=15.0)
    judge_variants(rows, config)
    assert choose_variant(rows, config) == "int4-int8head"
    wide = ChatQuantizeConfig(max_quality_drop=40.0)
    judge_variants(rows, wide)
    assert choose_variant(rows, wide) == "int4-block32"
    # Within 3% of the fastest is a tie: the lower perplexity wins it.
    rows["int8"]["decode_tokens_per_s"] = 295.0
    judge_variants(rows, wide)
    assert choose_variant(rows, wide) == "int8"
    strict = ChatQuantizeConfig(max_quality_drop=0.5)
    judge_variants(rows, strict)
    with pytest.raises(EdgetuneError, match=r"no variant is within the 0.5% perplexity budget"):
        choose_variant(rows, strict)
    # A variant decoding slower than fp32 is never kept, even within the budget.
    rows = _rows(report, int8={"perplexity": fp32["perplexity"], "decode_tokens_per_s": 90.0},
                 fp32={"decode_tokens_per_s": 100.0})
    only_int8 = ChatQuantizeConfig(variants=("int8",), max_quality_drop=5.0)
    judge_variants({name: rows[name] for name in ("fp32", "int8")}, only_int8)
    with pytest.raises(EdgetuneError, match="no variant"):
        choose_variant({name: rows[name] for name in ("fp32", "int8")}, only_int8)
    # A fidelity veto (quantize's intent-fidelity scorer) rules out the fastest: the next one is kept.
    rows = _rows(report, **{"int4-block32": {"perplexity": fp32["perplexity"], "decode_tokens_per_s": 300.0,
                                             "scorer_veto": True, "intent_fidelity": 0.7},
                            "int4-block32-fp32act": {"perplexity": fp32["perplexity"], "decode_tokens_per_s": 200.0,
                                                     "intent_fidelity": 0.8}},
                 fp32={"decode_tokens_per_s": 100.0, "intent_fidelity": 0.8})
    pair = {name: rows[name] for name in ("fp32", "int4-block32", "int4-block32-fp32act")}
    vetoing = ChatQuantizeConfig(variants=("int4-block32", "int4-block32-fp32act"), max_quality_drop=5.0)
    judge_variants(pair, vetoing)
    assert choose_variant(pair, vetoing) == "int4-block32-fp32act"
    table = format_variant_table(pair, "int4-block32-fp32act")
    assert re.search(r"^int4-block32 .* 70\.0% .*vetoed by fidelity", table, re.MULTILINE)
    # keep names one variant; over the budget it is refused rather than shipped.
    keep = ChatQuantizeConfig(keep="int4-block128", max_quality_drop=15.0)
    rows = _rows(report, **{"int4-block128": {"perplexity": fp32["perplexity"] * 1.5}})
    judge_variants(rows, keep)
    with pytest.raises(EdgetuneError, match="keep: int4-block128 raises perplexity by 50.0%"):
        choose_variant(rows, keep)


def test_a_real_run_over_budget_writes_nothing(fp32_export, heldout_file, tmp_path):
    output = tmp_path / "refused"
    # A scorer's veto takes the only variant out of the budget: the run refuses and writes nothing.
    with pytest.raises(EdgetuneError, match="no variant is within"):
        quantize_chat(fp32_export, output, ChatQuantizeConfig(variants=("int8",), validation=str(heldout_file),
                                                              score_prompts=2, timing_prompts=1, timing_new_tokens=4),
                      scorers={"veto": lambda name, *_: {"scorer_veto": name != "fp32"}})
    assert not output.exists()


def test_config_and_input_errors(tiny_chat_dir, tmp_path):
    with pytest.raises(ConfigError, match="variants: unknown variant 'int3'"):
        ChatQuantizeConfig(variants=("int3",))
    with pytest.raises(ConfigError, match="keep: unknown variant 'int5'"):
        ChatQuantizeConfig(keep="int5")
    assert ChatQuantizeConfig(variants=("int4-block32",), keep="int8").variants == ("int4-block32", "int8")
    assert ChatQuantizeConfig(auto=True).variants == tuple(CHAT_VARIANTS)
    assert "int4-block128" not in ChatQuantizeConfig().variants
    with pytest.raises(EdgetuneError, match="not an `edgetune export` of a chat model"):
        quantize_chat(tiny_chat_dir, tmp_path / "out", ChatQuantizeConfig())


def test_quantize_help_and_list_of_a_chat_export(fp32_export):
    runner = CliRunner()
    result = runner.invoke(cli, ["quantize", str(fp32_export), "out", "--help"])
    assert result.exit_code == 0, result.output
    options = result.output.split("Options:")[1]
    for flag in ("--max-quality-drop", "--variants", "--auto", "--keep", "--timing-new-tokens", "--score-prompts"):
        assert re.search(rf"^\s+{flag}\b", options, re.MULTILINE), flag
    assert "--max-accuracy-drop" not in options
    listed = runner.invoke(cli, ["quantize", str(fp32_export), "out", "--list"]).output
    assert all(re.search(rf"^{name} ", listed, re.MULTILINE) for name in CHAT_VARIANTS), listed


def test_the_kept_variant_bundles_and_verifies_in_the_runtime(quantized, heldout_file, tmp_path):
    """The contract end to end: quantize's output is what `edgetune bundle` and the runtime read."""
    from edgetune.bundle.build import build_bundle
    from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig
    from edgetune_runtime.bundle import Bundle

    output, report = quantized
    bundle_dir = tmp_path / "bundle"
    build_bundle(output, bundle_dir, GenerationBundleConfig(validation=str(heldout_file), label_column="intent",
                                                            golden_examples=2, context_length=384,
                                                            max_new_tokens=8))
    bundle = Bundle.load(bundle_dir)
    assert bundle.verify().passed
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["tuned_for"]["variant"] == report["chosen"]
    assert manifest["metrics"]["perplexity"] == report["variants"][report["chosen"]]["perplexity"]
    card = (bundle_dir / "README.md").read_text()
    assert all(name in card for name in report["variants"]), "the card's table has every variant measured"


def test_quantize_command_runs_a_chat_export(fp32_export, heldout_file, tmp_path):
    output = tmp_path / "int8"
    result = CliRunner().invoke(cli, ["quantize", str(fp32_export), str(output), "--variant", "int8", "--keep", "int8",
                                      "--max-quality-drop", "1000", "--validation", str(heldout_file),
                                      "--score-prompts", "2", "--timing-prompts", "1", "--timing-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^int8 .*CHOSEN", result.output, re.MULTILINE) and "kept int8" in result.output
    assert read_stage_manifest(output)["variant"] == "int8"


def test_intent_fidelity_of_every_variant_is_judged_and_can_veto(fp32_export, heldout_file, tiny_bert_dir, tmp_path):
    from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig
    from edgetune.tasks.text_generation.fidelity_scorer import intent_fidelity_scorer

    judge_settings = ChatEvaluateConfig(judge_data=str(heldout_file), judge_model=str(tiny_bert_dir),
                                        judge_epochs=1.0, judge_per_intent=2)
    config = ChatQuantizeConfig(variants=("int4-block32",), keep="int4-block32", max_quality_drop=1000.0,
                                validation=str(heldout_file), score_prompts=4, timing_prompts=1, timing_new_tokens=4)
    # A drop below zero points vetoes any variant judged no better than fp32; without a limit nothing is vetoed.
    for limit, kept in ((None, True), (-100.0, False)):
        scorer = intent_fidelity_scorer(fp32_export, 3, 6, limit, judge_settings)
        output = tmp_path / f"limit-{limit}"
        if kept:
            report = quantize_chat(fp32_export, output, config, scorers={"intent_fidelity": scorer})
            for row in report["variants"].values():
                assert 0.0 <= row["intent_fidelity"] <= 1.0 and row["fidelity_prompts"] == 3
        else:
            with pytest.raises(EdgetuneError, match="keep: int4-block32 was vetoed by a quality scorer \\(intent"):
                quantize_chat(fp32_export, output, config, scorers={"intent_fidelity": scorer})
            assert not output.exists()


def test_fidelity_settings_are_checked():
    with pytest.raises(ConfigError, match="fidelity_prompts: 20 is more than the 16 score_prompts"):
        ChatQuantizeConfig(fidelity_prompts=20)
