"""`edgetune bundle` on a chat model's ONNX artifact: files, the generation section, the chat format derived
from the Jinja template (and refused when it cannot reproduce it), golden prompts, model card, zip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from chat_artifact import SYSTEM_PROMPT, tiny_chat_bundle_dir, tiny_chat_onnx_dir  # noqa: F401 (session fixtures)

from edgetune.bundle.build import build_bundle
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig
from edgetune.tasks.text_generation.chat_format import ChatFormatError, check_chat_format, derive_chat_format
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.tasks.generation.bundle import GenerationBundle

REPO = Path(__file__).resolve().parents[1]


def _edgetune(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'toolchain'}{os.pathsep}{REPO / 'runtime'}"}
    return subprocess.run([sys.executable, "-m", "edgetune", *args], capture_output=True, text=True, env=env,
                          timeout=170)


def test_the_bundle_holds_the_decoder_files_and_the_generation_section(tiny_chat_bundle_dir):  # noqa: F811
    names = sorted(path.name for path in tiny_chat_bundle_dir.iterdir())
    assert names == ["README.md", "genai_config.json", "golden.json", "manifest.json", "model.onnx",
                     "model.onnx.data", "tokenizer.json"]
    manifest = json.loads((tiny_chat_bundle_dir / "manifest.json").read_text())
    assert manifest["task"] == "text-generation" and set(manifest["files"]) == set(names) - {"manifest.json"}
    section = manifest["generation"]
    assert section["context_length"] == 256 and section["max_new_tokens"] == 32
    assert section["system_prompt"] == SYSTEM_PROMPT
    assert section["stop_token_ids"] == [2]  # <|im_end|>, the tiny model's end of sequence too
    assert section["sampling"]["temperature"] == 0.0  # its generation_config does not sample
    assert section["chat_template"].startswith("{% for message in messages %}")
    assert section["chat_format"]["generation_prompt"] == "<|im_start|>assistant\n"
    genai = json.loads((tiny_chat_bundle_dir / "genai_config.json").read_text())
    assert genai["model"]["context_length"] == 256 and genai["search"]["max_length"] == 256
    assert manifest["tuned_for"]["variant"] == "fp32" and manifest["metrics"]["perplexity"] == 380.5


def test_golden_prompts_are_held_out_conversations_answered_by_the_runtime(tiny_chat_bundle_dir):  # noqa: F811
    golden = json.loads((tiny_chat_bundle_dir / "golden.json").read_text())
    assert len(golden) == 4
    assert all(example["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT} for example in golden)
    assert all(example["messages"][-1]["role"] == "user" for example in golden)
    assert len({example["messages"][-1]["content"] for example in golden}) == 4
    bundle = Bundle.load(tiny_chat_bundle_dir)
    assert isinstance(bundle, GenerationBundle) and bundle.verify().passed
    assert golden[0]["token_ids"] == bundle.greedy_token_ids(golden[0]["messages"], 16)


def test_the_model_card_has_the_quality_and_speed_table(tiny_chat_bundle_dir):  # noqa: F811
    card = (tiny_chat_bundle_dir / "README.md").read_text()
    assert "| variant | perplexity | decode_tokens_per_s |" in card
    assert "| fp32 (this bundle) | 380.5 | 1500 |" in card
    assert "bundle.generate(" in card and "predict" not in card


def test_the_chat_format_reproduces_the_template_token_for_token(tiny_chat_onnx_dir):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_onnx_dir)
    chat_format = derive_chat_format(tokenizer, "tiny")
    assert chat_format.preamble_without_system.startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert chat_format.preamble_with_system == "" and chat_format.system_after_first
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "system", "content": "c"}, {"role": "user", "content": "d"}]
    assert check_chat_format(chat_format, tokenizer, [conversation], "tiny") == 5
    assert chat_format.render(conversation) == tokenizer.apply_chat_template(conversation, tokenize=False,
                                                                             add_generation_prompt=True)


@pytest.mark.parametrize(("template", "reason"), [
    # Trims what the user wrote: a fixed prefix and suffix cannot say that.
    ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] | trim + "
     "'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
     "other token ids"),
    # Numbers the turns: each one's prefix differs.
    ("{% for message in messages %}{{'<|im_start|>' + loop.index|string + message['role'] + '\n' + "
     "message['content'] + '<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
     "{% endif %}", "cannot be rendered without Jinja|other token ids"),
])
def test_a_template_the_spec_cannot_reproduce_is_refused(tiny_chat_onnx_dir, template, reason):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_onnx_dir)
    tokenizer.chat_template = template
    with pytest.raises(ChatFormatError, match=reason):
        check_chat_format(derive_chat_format(tokenizer, "tiny"), tokenizer, [], "tiny")


def test_an_artifact_without_a_chat_template_is_refused_in_one_line(tiny_chat_onnx_dir, tmp_path):  # noqa: F811
    import shutil

    source = tmp_path / "onnx"
    shutil.copytree(tiny_chat_onnx_dir, source)
    (source / "chat_template.jinja").unlink()
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(EdgetuneError, match="has no chat template"):
        build_bundle(source, tmp_path / "bundle", GenerationBundleConfig())
    assert not (tmp_path / "bundle").exists()


def test_bundle_command_infers_the_chat_task_and_writes_a_zip(tiny_chat_onnx_dir, tmp_path):  # noqa: F811
    output = tmp_path / "chat-bundle"
    result = _edgetune("bundle", str(tiny_chat_onnx_dir), str(output), "--golden-examples", "2",
                       "--golden-prefix-tokens", "4", "--context-length", "128", "--max-new-tokens", "16", "--zip")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(output.with_name("chat-bundle.zip")) as archive:
        assert "chat-bundle/model.onnx.data" in archive.namelist()
    bundle = Bundle.load(output.with_name("chat-bundle.zip"))
    assert bundle.generation.context_length == 128 and bundle.generation.golden_prefix_tokens == 4
    check = bundle.verify()
    assert check.passed and check.checked == 2


def test_bundle_settings_are_checked_before_any_work(tiny_chat_onnx_dir, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="context_length"):
        GenerationBundleConfig(context_length=64, max_new_tokens=64)
    with pytest.raises(EdgetuneError, match="longer than the model's 512"):
        build_bundle(tiny_chat_onnx_dir, tmp_path / "b", GenerationBundleConfig(context_length=4096))
    result = _edgetune("bundle", str(tiny_chat_onnx_dir), str(tmp_path / "c"), "--golden-prefix-tokens", "0")
    assert result.returncode == 2 and result.stderr == "error: --golden-prefix-tokens: 0 must be from 1 to 4096\n"


def test_the_chat_flags_of_bundle_are_the_fields_of_its_config():
    from edgetune.cli.export_command import bundle_command

    params = bundle_command.params_for("text-generation")
    flags = {next(opt for opt in param.opts if opt.startswith("--")) for param in params
             if hasattr(param, "opts") and param.opts[0].startswith("-")}
    fields = {"--" + field.replace("_", "-") for field in GenerationBundleConfig.__dataclass_fields__}
    assert flags - {"--force", "--task", "--help"} == fields
    assert {"--golden-prefix-tokens", "--max-new-tokens", "--context-length"} <= fields


def test_golden_prompts_come_from_a_validation_file_when_given(tiny_chat_onnx_dir, tmp_path):  # noqa: F811
    import csv

    conversations = tmp_path / "held_out.csv"
    with open(conversations, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer", "topic"])
        for index in range(12):
            writer.writerow([f"question number {index} about topic {index % 3}", f"answer {index}", f"t{index % 3}"])
    output = tmp_path / "bundle"
    build_bundle(tiny_chat_onnx_dir, output, GenerationBundleConfig(
        validation=str(conversations), label_column="topic", golden_examples=3, context_length=128, max_new_tokens=8))
    golden = json.loads((output / "golden.json").read_text())
    asked = [example["messages"][-1]["content"] for example in golden]
    assert len(asked) == 3 and all(text.startswith("question number") for text in asked)
    assert sorted(text[-1] for text in asked) == ["0", "1", "2"]  # one per topic
    assert Bundle.load(output).verify().passed


def test_ort_format_is_refused_for_chat_bundles():
    with pytest.raises(ConfigError, match="ort_format: not supported for chat bundles"):
        GenerationBundleConfig(ort_format=True)
