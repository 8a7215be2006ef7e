"""`finetune --task chat`: TRL SFT on real Bitext conversations with the tiny Llama chat model.

What is checked is what a user relies on: the prompt and the assistant header carry no loss, a few
steps write a loadable merged model with the contract's manifest, an interrupted run resumes from its
checkpoint, data mistakes are one line, and the chat flags exist. One integration test runs SmolLM2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas
import pytest
from click.testing import CliRunner
from transformers import TrainerCallback

from conftest import BITEXT
from edgetune.cli.main import cli
from edgetune.data.chat import load_chat_data
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import ConfigError, DataError
from edgetune.models.gguf_dir import resolve_model_directory
from edgetune.tasks.text_generation.sft import build_sft_trainer, finetune_chat, load_chat_tokenizer
from edgetune.tasks.text_generation.sft_config import ChatFinetuneConfig

pytestmark = pytest.mark.skipif(not BITEXT.is_file(), reason="shared Bitext data not present")

# The tiny model's 384-token vocabulary spends ~3x SmolLM2's tokens on the same text.
TINY_MAX_LENGTH = 1024


def _bitext(tmp_path: Path, per_intent: int = 3, intents: int = 8, name: str = "bitext.csv") -> Path:
    """`per_intent` real rows of each of the first `intents` intents (the file is sorted by intent)."""
    frame = pandas.read_csv(BITEXT, dtype=str, keep_default_na=False)
    chosen = frame["intent"].drop_duplicates().head(intents)
    subset = frame[frame["intent"].isin(chosen)].groupby("intent", sort=False).head(per_intent)
    path = tmp_path / name
    subset.to_csv(path, index=False)
    return path


def _tiny_config(tiny_chat_dir: Path, **overrides) -> ChatFinetuneConfig:
    settings = {"model": str(tiny_chat_dir), "max_steps": 2, "batch_size": 4, "eval_batch_size": 8,
                "max_length": TINY_MAX_LENGTH, "logging_steps": 1, **overrides}
    return ChatFinetuneConfig(**settings)


def test_prompt_and_assistant_header_carry_no_loss(tmp_path, tiny_chat_dir):
    from transformers import AutoModelForCausalLM

    chat = load_chat_data(ChatDataConfig(train=str(_bitext(tmp_path)), system_prompt="You answer support questions."))
    tokenizer = load_chat_tokenizer(resolve_model_directory(tiny_chat_dir))
    examples = chat.train.examples[:3]
    trainer = build_sft_trainer(_tiny_config(tiny_chat_dir), AutoModelForCausalLM.from_pretrained(tiny_chat_dir),
                                tokenizer, examples, chat.validation.examples, TINY_MAX_LENGTH, tmp_path / "ckpt")
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(len(examples))])
    for row, example in enumerate(examples):
        messages = list(example.messages)
        prompt_ids = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True)
        full_ids = tokenizer.apply_chat_template(messages)
        assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")  # the header is part of the prompt
        labels, input_ids = batch["labels"][row].tolist(), batch["input_ids"][row].tolist()
        assert input_ids[:len(full_ids)] == full_ids
        assert labels[:len(prompt_ids)] == [-100] * len(prompt_ids)  # system, user and assistant header: no loss
        assert labels[len(prompt_ids):len(full_ids)] == full_ids[len(prompt_ids):]  # every answer token learned
        assert tokenizer.decode(full_ids[len(prompt_ids):]).startswith(example.response)
        assert set(labels[len(full_ids):]) <= {-100}  # padding


def test_a_few_steps_write_a_merged_model_and_the_contract_manifest(tmp_path, tiny_chat_dir, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = _bitext(tmp_path, per_intent=4)
    monkeypatch.chdir(tmp_path)  # a relative path on the command line is recorded absolute, for later stages
    data = ChatDataConfig(train=train.name, test_fraction=0.25, system_prompt="You answer support questions.")
    output = tmp_path / "chat-model"
    result = finetune_chat(data, _tiny_config(tiny_chat_dir), output)

    assert not (output / "adapter_config.json").exists()  # adapters merged: a plain causal LM
    model = AutoModelForCausalLM.from_pretrained(output)
    assert not any("lora" in name for name, _ in model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert json.loads((output / "tokenizer_config.json").read_text())["chat_template"] == tokenizer.chat_template
    assert json.loads((output / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id

    manifest = json.loads((output / "edgetune.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["task"] == "text-generation"
    assert manifest["data"]["config"]["train"] == str(train.resolve()) and manifest["data"]["fingerprint"]
    assert manifest["data"]["config"]["test_fraction"] == 0.25
    assert manifest["system_prompt"] == "You answer support questions." and manifest["max_length"] == TINY_MAX_LENGTH
    assert manifest["training"]["steps"] == 2
    for split in ("validation", "test"):
        figures = manifest["metrics"][split]
        assert figures["perplexity"] == pytest.approx(2.718281828 ** figures["loss"], rel=1e-3)
    assert result.metrics == manifest["metrics"]
    with open(output / "training_curves.csv", newline="") as handle:
        evaluated = [float(row["eval_loss"]) for row in csv.DictReader(handle) if row["eval_loss"]]
    assert evaluated[-1] == pytest.approx(manifest["metrics"]["validation"]["loss"],
                                          abs=1e-3)  # the test split's loss is not drawn as validation
    assert not (tmp_path / ".chat-model.work").exists()  # checkpoints removed after success

    # The held-out splits later stages read are the ones this run carved.
    from edgetune.tasks.text_generation.heldout import heldout_conversations

    test = heldout_conversations(output, "test")
    validation = heldout_conversations(output, "validation")
    assert len(test) == manifest["data"]["splits"]["test"]["rows"] > 0
    assert not {example.prompt for example in test} & {example.prompt for example in validation}


class CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt  # stands in for a killed process, right after the first checkpoint


class FirstStepSeen(TrainerCallback):
    def __init__(self) -> None:
        self.first_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, tiny_chat_dir):
    data = ChatDataConfig(train=str(_bitext(tmp_path)))
    config = _tiny_config(tiny_chat_dir, max_steps=3, eval_steps=1)
    output = tmp_path / "chat-model"
    with pytest.raises(KeyboardInterrupt):
        finetune_chat(data, config, output, extra_callbacks=[CrashAfterFirstSave()])
    assert not output.exists()
    with pytest.raises(Exception, match="--resume"):  # neither silently restarted nor mixed with a new run
        finetune_chat(data, config, output)
    with pytest.raises(ConfigError, match="config.learning_rate"):  # other settings: refused, naming the field
        finetune_chat(data, _tiny_config(tiny_chat_dir, max_steps=3, eval_steps=1, learning_rate=1e-3), output,
                      resume=True)

    seen = FirstStepSeen()
    finetune_chat(data, config, output, resume=True, extra_callbacks=[seen])
    assert seen.first_step == 1  # continued after the checkpoint of step 1
    assert json.loads((output / "edgetune.json").read_text())["training"]["steps"] == 3


def test_data_mistakes_are_one_line(tmp_path, tiny_chat_dir):
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "Where is my order?"}]}) + "\n")
    runner = CliRunner()
    base = ["finetune", "--task", "chat", "--model", str(tiny_chat_dir), "--max-steps", "1"]
    result = runner.invoke(cli, [*base, "--train", str(no_answer), "-o", str(tmp_path / "a")])
    assert result.exit_code == 2 and "no assistant turn" in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [result.stderr.strip()]

    train = _bitext(tmp_path)
    result = runner.invoke(cli, [*base, "--train", str(train), "--max-length", "64", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "over max_length 64" in result.stderr and "row " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()

    with pytest.raises(DataError, match="over max_length 64"):
        finetune_chat(ChatDataConfig(train=str(train)), _tiny_config(tiny_chat_dir, max_length=64), tmp_path / "c")


def test_over_long_conversations_can_be_dropped_instead(tmp_path, tiny_chat_dir, caplog):
    from edgetune.tasks.text_generation.template_lengths import template_lengths

    train = _bitext(tmp_path)
    chat = load_chat_data(ChatDataConfig(train=str(train)))
    tokenizer = load_chat_tokenizer(resolve_model_directory(tiny_chat_dir))
    totals = sorted(template_lengths(tokenizer, [*chat.train.examples, *chat.validation.examples]).total)
    max_length = totals[len(totals) * 3 // 4]  # a quarter of the conversations are longer
    config = _tiny_config(tiny_chat_dir, max_length=max_length, on_overflow="drop", max_steps=1)
    with caplog.at_level("WARNING"):
        result = finetune_chat(ChatDataConfig(train=str(train)), config, tmp_path / "out")
    examples = json.loads((tmp_path / "out" / "edgetune.json").read_text())["training"]["examples"]
    assert "dropped" in caplog.text
    assert examples["train"] + examples["validation"] == sum(count <= max_length for count in totals)
    assert result.metrics["validation"]["loss"] > 0


def test_the_test_split_is_scored_unless_score_test_is_off(tmp_path, tiny_chat_dir):
    data = ChatDataConfig(train=str(_bitext(tmp_path, per_intent=6)), test_fraction=0.2)
    scored = finetune_chat(data, _tiny_config(tiny_chat_dir, max_steps=1), tmp_path / "scored")
    skipped = finetune_chat(data, _tiny_config(tiny_chat_dir, max_steps=1, score_test=False), tmp_path / "skipped")
    assert scored.metrics["test"]["loss"] > 0 and "test" not in skipped.metrics
    assert skipped.metrics["validation"] == scored.metrics["validation"]  # same seed, same run otherwise


def test_test_fraction_carves_a_seeded_test_split_disjoint_from_validation(tmp_path):
    train = _bitext(tmp_path, per_intent=6)
    first = load_chat_data(ChatDataConfig(train=str(train), test_fraction=0.2, validation_fraction=0.2))
    again = load_chat_data(ChatDataConfig(train=str(train), test_fraction=0.2, validation_fraction=0.2))
    prompts = {name: {example.prompt for example in getattr(first, name).examples}
               for name in ("train", "validation", "test")}
    assert len(first.test) == 8 and {example.intent for example in first.test.examples} == \
        {example.intent for example in first.train.examples}  # one of each intent's six
    assert not prompts["test"] & prompts["validation"] and not prompts["test"] & prompts["train"]
    assert len(first.train) + len(first.validation) + len(first.test) == 48
    assert [e.row for e in first.test.examples] == [e.row for e in again.test.examples]
    assert load_chat_data(ChatDataConfig(train=str(train))).test is None  # default: no test split
    with pytest.raises(ConfigError, match="test_fraction"):
        ChatDataConfig(train=str(train), test=str(train), test_fraction=0.1)
    with pytest.raises(ConfigError, match="test_fraction"):
        ChatDataConfig(train=str(train), test_fraction=0.6)


def test_cli_task_chat_help_lists_the_chat_flags():
    result = CliRunner().invoke(cli, ["finetune", "--task", "chat", "--help"])
    assert result.exit_code == 0
    for flag in ("--max-steps", "--on-overflow", "--packing", "--test-fraction", "--system-prompt", "--lora-r",
                 "--method [lora|full]"):
        assert flag in result.output, flag
    classifier = CliRunner().invoke(cli, ["finetune", "--help"]).output
    assert "--label-column" in classifier and "--on-overflow" not in classifier


def test_data_inspect_reports_chat_template_lengths(tmp_path, tiny_chat_dir):
    train = _bitext(tmp_path)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["data", "inspect", "--task", "chat", "--train", str(train), "--model",
                                      str(tiny_chat_dir), "--max-length", "300", "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "p99" in result.output and "tokens after the chat template" in result.output
    report = json.loads(report_path.read_text())
    tokenizer = load_chat_tokenizer(resolve_model_directory(tiny_chat_dir))
    chat = load_chat_data(ChatDataConfig(train=str(train)))
    totals = sorted(len(tokenizer.apply_chat_template(list(e.messages))) for e in chat.train.examples)
    assert report["splits"]["train"]["total"]["max"] == totals[-1]
    assert report["splits"]["train"]["over_max_length"] == sum(count > 300 for count in totals)


@pytest.mark.integration
def test_smollm2_fine_tunes_on_real_bitext_rows(tmp_path):
    from edgetune.models.cache import cache_root
    from edgetune.models.registry import find_packaged_model

    smollm2 = find_packaged_model("SmolLM2-135M-Instruct")
    if not (cache_root() / "models" / smollm2.cache_name / smollm2.weights_file).is_file():
        pytest.skip("SmolLM2's GGUF is not cached (edgetune models pull)")
    train = _bitext(tmp_path, per_intent=6, intents=4)  # 24 rows: 20 train, 4 validation (one batch)
    config = ChatFinetuneConfig(max_steps=2, batch_size=4, eval_batch_size=4, on_overflow="drop", logging_steps=1)
    result = finetune_chat(ChatDataConfig(train=str(train)), config, tmp_path / "smollm2-chat")
    manifest = json.loads((tmp_path / "smollm2-chat" / "edgetune.json").read_text())
    assert manifest["base_model"]["weights_sha256"] == smollm2.weights_sha256
    # Base SmolLM2 already answers support questions plausibly: far from uniform over 49,152 tokens.
    assert 1.0 < result.metrics["validation"]["perplexity"] < 30


@pytest.mark.slow
def test_accelerate_launch_fine_tunes_a_chat_model_with_two_cpu_processes(tmp_path, tiny_chat_dir):
    # As for classification: `--multi_gpu` is Accelerate's torchrun launcher; on a CPU the processes meet over gloo.
    import subprocess
    import sys

    train = _bitext(tmp_path, per_intent=4)  # 32 rows: 30 train after a 5% validation split (2, one per process)
    output = tmp_path / "ddp-chat"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "edgetune", "finetune", "--task", "chat", "--model", str(tiny_chat_dir), "--train", str(train),
         "-o", str(output), "--max-steps", "3", "--batch-size", "4", "--max-length", str(TINY_MAX_LENGTH)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((output / "edgetune.json").read_text())
    assert manifest["training"]["processes"] == 2 and manifest["training"]["steps"] == 3
    assert not (tmp_path / ".ddp-chat.work").exists()  # checkpoints removed once the main process saved
