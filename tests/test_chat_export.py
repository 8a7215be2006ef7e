"""Chat export: onnxruntime-genai's builder on the tiny Llama, gated on greedy parity with PyTorch on Bitext prompts."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner

from conftest import BITEXT
from edgetune.cli.main import cli
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest
from edgetune.tasks.text_generation.export import export_chat
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.heldout import heldout_conversations
from edgetune.tasks.text_generation.parity import compare_greedy
from edgetune.tasks.text_generation.scoring import encode_conversations
from edgetune_runtime.tasks.generation.decoder import Decoder

CONTEXT = 384


def write_heldout_conversations(path: Path, per_intent: int = 2) -> Path:
    """`per_intent` real Bitext rows of each intent (distinct prompts): the held-out conversations file."""
    chosen: dict[str, list[dict]] = {}
    with open(BITEXT, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows = chosen.setdefault(row["intent"], [])
            if len(rows) < per_intent and row["instruction"] not in {r["instruction"] for r in rows}:
                rows.append({key: row[key] for key in ("instruction", "response", "intent")})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=("instruction", "response", "intent"))
        writer.writeheader()
        for rows in chosen.values():
            writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def heldout_file(tmp_path_factory) -> Path:
    return write_heldout_conversations(tmp_path_factory.mktemp("chat_heldout") / "heldout.csv")


@pytest.fixture(scope="module")
def chat_export(tmp_path_factory, tiny_chat_dir, heldout_file):
    output = tmp_path_factory.mktemp("chat_export") / "onnx"
    config = ChatExportConfig(validation=str(heldout_file), context_length=CONTEXT, parity_prompts=8,
                              parity_new_tokens=24)
    return export_chat(tiny_chat_dir, output, config)


def test_fp32_export_passes_the_greedy_gate_and_writes_the_contract(chat_export, tiny_chat_dir):
    parity = chat_export.parity
    assert parity.passed and parity.prompts == 8 and parity.identical + len(parity.near_ties) == 8
    assert parity.teacher_forced_agreement > 0.99
    output = chat_export.output_dir
    manifest = read_stage_manifest(output)
    assert (manifest["stage"], manifest["task"], manifest["variant"]) == ("export", "text-generation", "fp32")
    assert manifest["source_model"] == str(tiny_chat_dir.resolve())
    assert manifest["source_model_manifest_sha256"] == manifest_sha256(tiny_chat_dir)
    assert manifest["base_model"] == {"name": tiny_chat_dir.resolve().name}  # no edgetune manifest: the directory
    assert manifest["metrics"]["parity"]["passed"] and manifest["metrics"]["perplexity"] > 1
    genai = json.loads((output / "genai_config.json").read_text())
    assert genai["model"]["context_length"] == genai["search"]["max_length"] == CONTEXT
    for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "chat_template.jinja", "builder.log"):
        assert (output / name).is_file(), name
    assert "onnxruntime_genai.models.builder" in (output / "builder.log").read_text()
    # Every file is in the manifest, so a later stage can tell the artifact was not edited.
    assert set(manifest["files"]) == {path.name for path in output.iterdir()} - {"edgetune.json"}


def _corrupt_lm_head(directory: Path) -> None:
    """Add noise to the last weights in the external data file: the lm_head, written last by the builder."""
    data_path = directory / "model.onnx.data"
    weights = numpy.fromfile(data_path, dtype=numpy.float32)
    head = 64 * 384
    weights[-head:] += numpy.random.default_rng(0).normal(0, 2.0, head).astype(numpy.float32)
    weights.tofile(data_path)


def test_a_corrupted_weight_fails_the_gate(chat_export, tiny_chat_dir, heldout_file, tmp_path):
    from edgetune.tasks.text_generation.chat_models import TorchChatModel

    broken = tmp_path / "broken"
    shutil.copytree(chat_export.output_dir, broken)
    _corrupt_lm_head(broken)
    reference = TorchChatModel(tiny_chat_dir)
    examples = heldout_conversations(tiny_chat_dir, "validation", str(heldout_file))[:4]
    conversations = encode_conversations(reference.tokenizer, examples, reference.stop_ids, CONTEXT)
    assert compare_greedy(reference, Decoder.from_directory(chat_export.output_dir), conversations, 16, 1e-3).passed
    report = compare_greedy(reference, Decoder.from_directory(broken), conversations, 16, 1e-3)
    assert not report.passed and report.mismatches
    assert "differ without a tie" in report.describe()


def test_int4_export_is_built_after_the_gate_and_scored_against_fp32(chat_export, tiny_chat_dir, heldout_file,
                                                                     tmp_path):
    config = ChatExportConfig(precision="int4", int4_block_size=16, validation=str(heldout_file),
                              context_length=CONTEXT, parity_prompts=2, parity_new_tokens=8)
    result = export_chat(tiny_chat_dir, tmp_path / "int4", config)
    manifest = read_stage_manifest(result.output_dir)
    assert manifest["variant"] == result.variant == "int4-block16"
    assert result.parity.passed and 0 <= result.metrics["agreement_with_fp32"] <= 1
    assert result.metrics["size_mb"] < chat_export.metrics["size_mb"]
    Decoder.from_directory(result.output_dir).greedy([1, 2, 3], 4)


def test_bad_settings_and_inputs_fail_in_one_line_and_write_nothing(tiny_chat_dir, heldout_file, tmp_path):
    with pytest.raises(ConfigError, match="int4_block_size: 48 is not one of"):
        ChatExportConfig(int4_block_size=48)
    with pytest.raises(ConfigError, match="parity_prompts: 0 must be at least 1"):
        ChatExportConfig(parity_prompts=0)
    output = tmp_path / "out"
    with pytest.raises(EdgetuneError, match="context_length: 4096 is over the 512 positions"):
        export_chat(tiny_chat_dir, output, ChatExportConfig(validation=str(heldout_file), context_length=4096))
    no_template = tmp_path / "no_template"
    shutil.copytree(tiny_chat_dir, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer_config = json.loads((no_template / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(EdgetuneError, match="has no chat template"):
        export_chat(no_template, output, ChatExportConfig(validation=str(heldout_file)))
    with pytest.raises(EdgetuneError, match="records no chat data"):
        export_chat(tiny_chat_dir, output, ChatExportConfig(context_length=CONTEXT))
    assert not output.exists()


def test_export_help_of_a_chat_model_lists_the_chat_flags(tiny_chat_dir):
    # The task is told from the model directory's config.json (a *ForCausalLM), no --task needed.
    result = CliRunner().invoke(cli, ["export", str(tiny_chat_dir), "out", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--context-length", "--precision", "--parity-prompts", "--tie-tolerance", "--int4-block-size"):
        assert re.search(rf"^\s+{flag} ", result.output, re.MULTILINE), flag
    assert "--max-abs-diff" not in result.output
    classifier_help = CliRunner().invoke(cli, ["export", "--help"]).output
    assert "--max-abs-diff" in classifier_help
    assert not re.search(r"^\s+--context-length ", classifier_help.split("Options:")[1], re.MULTILINE)


def test_a_failed_build_is_one_line_with_its_log(tiny_chat_dir, tmp_path):
    from edgetune.tasks.text_generation.builder import run_model_builder

    weightless = tmp_path / "weightless"
    shutil.copytree(tiny_chat_dir, weightless)
    (weightless / "model.safetensors").unlink()
    (tmp_path / "build").mkdir()
    with pytest.raises(EdgetuneError) as failure:
        run_model_builder(weightless, tmp_path / "build", "fp32", {}, tmp_path / "cache", tmp_path / "builder.log")
    message = str(failure.value)
    assert "model builder failed" in message and "\n" not in message
    assert str(tmp_path / "builder.log") in message and (tmp_path / "builder.log").stat().st_size > 0


def test_export_command_runs_a_chat_model(tiny_chat_dir, heldout_file, tmp_path):
    output = tmp_path / "onnx"
    result = CliRunner().invoke(cli, ["export", str(tiny_chat_dir), str(output), "--context-length", "256",
                                      "--validation", str(heldout_file), "--parity-prompts", "2",
                                      "--parity-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "2/2 prompts give PyTorch's 4 greedy tokens" in result.output or "near-tie" in result.output
    assert read_stage_manifest(output)["context_length"] == 256
