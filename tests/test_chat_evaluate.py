"""`edgetune evaluate --task chat`: perplexity, greedy answers, ROUGE-L, intent fidelity, placeholder style.

Real components throughout: the tiny Llama chat model in PyTorch and as an onnxruntime-genai build,
real Bitext rows of three intents, and an intent judge trained through edgetune's own classification
path (finetune -> export -> quantize -> bundle) from the tiny BERT.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import BITEXT
from edgetune.cli.main import cli
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import write_stage_manifest
from edgetune.tasks.text_generation.answer_scores import PLACEHOLDER, has_placeholder, rouge_l
from edgetune.tasks.text_generation.evaluate import (
    GENERATIONS_FILE,
    SCORES_FILE,
    evaluate_chat,
    evaluation_conversations,
    judge_training_conversations,
    sample_conversations,
)
from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig
from edgetune.tasks.text_generation.judge import JUDGE_RECORD, fidelity_share, judge_for

INTENTS = ("cancel_order", "check_refund_policy", "track_order")
TEST_ROWS_PER_INTENT = 4
JUDGE_ROWS_PER_INTENT = 24


def _bitext_rows() -> list[dict]:
    with open(BITEXT, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["intent"] in INTENTS]


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=("instruction", "response", "intent"))
        writer.writeheader()
        writer.writerows({key: row[key] for key in ("instruction", "response", "intent")} for row in rows)
    return path


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory) -> dict[str, Path]:
    """12 held-out rows (the 4 shortest answers of 3 intents: they fit the tiny model's 512-token context)
    and 24 other rows per intent for the judge, disjoint by prompt."""
    directory = tmp_path_factory.mktemp("chat_eval_data")
    rows = _bitext_rows()
    held_out, judge_rows, seen = [], [], set()
    for intent in INTENTS:
        members = sorted((row for row in rows if row["intent"] == intent), key=lambda row: len(row["response"]))
        for row in members:
            if row["instruction"] in seen:
                continue
            seen.add(row["instruction"])
            if sum(r["intent"] == intent for r in held_out) < TEST_ROWS_PER_INTENT:
                held_out.append(row)
            elif sum(r["intent"] == intent for r in judge_rows) < JUDGE_ROWS_PER_INTENT:
                judge_rows.append(row)
    return {"test": _write(directory / "test.csv", held_out), "train": _write(directory / "train.csv", judge_rows)}


@pytest.fixture(scope="module")
def edgetune_cache(tmp_path_factory):
    """A cache of this module's own, so judges trained here neither reuse nor litter the user's."""
    previous = os.environ.get("EDGETUNE_CACHE")
    os.environ["EDGETUNE_CACHE"] = str(tmp_path_factory.mktemp("edgetune_cache"))
    yield Path(os.environ["EDGETUNE_CACHE"])
    if previous is None:
        os.environ.pop("EDGETUNE_CACHE", None)
    else:
        os.environ["EDGETUNE_CACHE"] = previous


@pytest.fixture(scope="module")
def onnx_chat_dir(tmp_path_factory, tiny_chat_dir) -> Path:
    """The tiny chat model built by onnxruntime-genai's model builder in fp32 (contract item 3's files)."""
    work = tmp_path_factory.mktemp("tiny_chat_onnx")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(tiny_chat_dir),
                    "-o", str(work / "onnx"), "-p", "fp32", "-e", "cpu", "-c", str(work / "cache")],
                   check=True, capture_output=True, timeout=300)
    return work / "onnx"


def _config(chat_files, tiny_bert_dir, **overrides) -> ChatEvaluateConfig:
    settings = {"conversations": str(chat_files["test"]), "judge_data": str(chat_files["train"]),
                "judge_model": str(tiny_bert_dir), "judge_epochs": 2.0, "per_intent": None,
                "max_new_tokens": 24} | overrides
    return ChatEvaluateConfig(**settings)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, chat_files, tiny_chat_dir, onnx_chat_dir, tiny_bert_dir, edgetune_cache):
    output = tmp_path_factory.mktemp("chat_eval") / "report"
    return evaluate_chat([("base", tiny_chat_dir), ("onnx", onnx_chat_dir)], _config(chat_files, tiny_bert_dir),
                         output)


def test_scores_are_computed_for_every_model(evaluation):
    scores = json.loads((evaluation.output_dir / SCORES_FILE).read_text())
    assert scores["prompts"] == 3 * TEST_ROWS_PER_INTENT and scores["intents"] == 3
    for name in ("base", "onnx"):
        row = scores["models"][name]
        assert row["n"] == 3 * TEST_ROWS_PER_INTENT
        assert math.isfinite(row["perplexity"]) and row["perplexity"] > 1.0
        assert 0.0 <= row["rouge_l"] <= 1.0 and 0.0 <= row["intent_fidelity"] <= 1.0
        assert 0.0 <= row["placeholder_share"] <= 1.0
        assert row["mean_answer_tokens"] > 0 and math.isfinite(row["mean_answer_words"])
    assert scores["models"]["base"]["engine"] == "pytorch" and scores["models"]["onnx"]["engine"] == "onnx"
    assert set(scores["deltas_vs_base"]) == {"onnx"}
    assert 0.0 <= scores["reference"]["judge_accuracy"] <= 1.0
    # The references' own share, counted here with the same pattern, sits beside the models' shares.
    references = [json.loads(line)["reference"] for line in (evaluation.output_dir / GENERATIONS_FILE).open()]
    assert scores["reference"]["placeholder_share"] == sum(map(has_placeholder, references)) / len(references)
    assert "reference answers" in evaluation.table() and "onnx - base" in evaluation.table()


def test_pytorch_and_onnx_fp32_agree(evaluation):
    scores = evaluation.scores["models"]
    assert abs(scores["onnx"]["perplexity"] / scores["base"]["perplexity"] - 1) < 1e-3
    answers = [(row["models"]["base"]["answer"], row["models"]["onnx"]["answer"]) for row in evaluation.generations]
    assert any(torch_answer for torch_answer, _ in answers), "the tiny model wrote nothing: the check is empty"
    assert [torch_answer for torch_answer, _ in answers] == [onnx_answer for _, onnx_answer in answers]


def test_generations_jsonl_has_one_line_per_prompt(evaluation):
    directory = evaluation.output_dir
    lines = [json.loads(line) for line in (directory / GENERATIONS_FILE).read_text().splitlines()]
    assert len(lines) == 3 * TEST_ROWS_PER_INTENT
    for line in lines:
        assert line["intent"] in INTENTS and line["prompt"] and line["reference"]
        for name in ("base", "onnx"):
            model = line["models"][name]
            assert set(model) >= {"answer", "judged_intent", "rouge_l", "placeholder"}
            assert model["judged_intent"] in (*INTENTS, None)
    assert json.loads((directory / "edgetune.json").read_text())["stage"] == "evaluate"
    # Written in a staging folder and renamed: nothing but the report is left beside it.
    assert [path.name for path in directory.parent.iterdir()] == [directory.name]


def test_rouge_l_of_a_reference_against_itself_is_one(chat_files):
    reference = next(csv.DictReader(open(chat_files["test"], encoding="utf-8")))["response"]
    assert rouge_l(reference, reference) == 1.0
    assert rouge_l(reference, "Bananas grow in warm places.") < 0.2
    assert rouge_l(reference, "") == 0.0


def test_fidelity_counts_judged_labels_against_the_prompts_intents():
    assert fidelity_share(["a", "b", None, "a"], ["a", "a", "b", "a"]) == 0.5
    assert fidelity_share(["a", "b"], ["a", "b"]) == 1.0
    with pytest.raises(ValueError):
        fidelity_share(["a"], ["a", "b"])


def test_placeholder_pattern():
    assert has_placeholder("Go to {{Online Company Portal Info}} and click {{Settings}}.")
    assert PLACEHOLDER.findall("use {{Order Number}} or {{Account Type}}") == ["{{Order Number}}", "{{Account Type}}"]
    for plain in ("no placeholder here", "{single braces}", "{{}}", "{{ {nested} }}"):
        assert not has_placeholder(plain), plain


def test_the_judge_is_trained_on_real_rows_once_and_judges_answers(evaluation, chat_files, tiny_bert_dir,
                                                                   edgetune_cache):
    config = _config(chat_files, tiny_bert_dir)
    judge = judge_for(judge_training_conversations([], config), config)
    assert sorted(judge.labels) == list(INTENTS)
    assert judge.record["responses"] == 3 * JUDGE_ROWS_PER_INTENT
    assert judge.record == evaluation.scores["judge"]
    # Cached by the fingerprint of its data: the evaluation trained it, this call only loaded it.
    judges = list((edgetune_cache / "judges").iterdir())
    assert judges == [judge.directory] and (judge.directory / JUDGE_RECORD).is_file()
    judged = judge.judge(["I have cancelled your order {{Order Number}}.", "", "   "])
    assert judged[0] in INTENTS and judged[1:] == [None, None]


def test_the_sample_is_stratified_and_seeded(chat_files, tiny_chat_dir):
    config = ChatEvaluateConfig(conversations=str(chat_files["test"]))
    pool = evaluation_conversations([("base", tiny_chat_dir)], config)
    one_each = sample_conversations(pool, 1, None, seed=0)
    assert sorted(example.intent for example in one_each) == list(INTENTS)
    assert sample_conversations(pool, 1, None, seed=0) == one_each
    assert [e.intent for e in sample_conversations(pool, None, 4, seed=0)] == [*INTENTS, INTENTS[0]]
    assert len(sample_conversations(pool, 2, None, seed=3)) == 6


def test_recorded_splits_feed_the_evaluation_and_the_judge(tmp_path, chat_files, tiny_chat_dir):
    """A fine-tuned chat model (contract item 1) names its test split and training data; a base model does not."""
    model = tmp_path / "finetuned"
    shutil.copytree(tiny_chat_dir, model)
    data = ChatDataConfig(train=str(chat_files["train"]), test=str(chat_files["test"]))
    write_stage_manifest(model, "finetune", "text-generation",
                         {"data": {"fingerprint": "x", "config": vars(data)}, "system_prompt": None,
                          "max_length": 512, "metrics": {}})
    models = [("base", tiny_chat_dir), ("tuned", model)]
    held_out = evaluation_conversations(models, ChatEvaluateConfig())
    assert len(held_out) == 3 * TEST_ROWS_PER_INTENT and {e.source for e in held_out} == {str(chat_files["test"])}
    training = judge_training_conversations(models, ChatEvaluateConfig())
    assert training and {e.source for e in training} == {str(chat_files["train"])}
    with pytest.raises(EdgetuneError, match="--conversations FILE"):
        evaluation_conversations([("base", tiny_chat_dir)], ChatEvaluateConfig())


def test_a_failing_model_leaves_no_report(tmp_path, chat_files, tiny_chat_dir, tiny_bert_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "notes.txt").write_text("not a model")
    output = tmp_path / "out" / "report"
    output.parent.mkdir()
    config = _config(chat_files, tiny_bert_dir, judge=False, limit=2, max_new_tokens=4)
    with pytest.raises(EdgetuneError, match="neither an ONNX chat artifact"):
        evaluate_chat([("base", tiny_chat_dir), ("broken", broken)], config, output)
    assert not output.exists() and not any(output.parent.iterdir())


def test_every_config_field_is_a_flag_of_the_command():
    from edgetune.cli.config_options import config_flags
    from edgetune.cli.evaluate_command import evaluate_command

    flags = {opt for param in evaluate_command.params for opt in param.opts}
    assert {flag.flag for flag in config_flags(ChatEvaluateConfig)} <= flags
    assert {"--output", "--force", "--task"} <= flags


def test_cli_prints_the_table_and_refuses_an_existing_output(tmp_path, chat_files, tiny_chat_dir):
    output = tmp_path / "report"
    arguments = ["evaluate", "--task", "chat", f"base={tiny_chat_dir}", "-o", str(output), "--conversations",
                 str(chat_files["test"]), "--no-judge", "--limit", "2", "--max-new-tokens", "4"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "ROUGE-L" in result.output and json.loads((output / SCORES_FILE).read_text())["models"]["base"]["n"] == 2
    again = CliRunner().invoke(cli, arguments)
    assert again.exit_code == 2 and "already exists" in again.output
    no_data = CliRunner().invoke(cli, ["evaluate", "--task", "chat", str(tiny_chat_dir), "-o", str(tmp_path / "x")])
    assert no_data.exit_code == 2 and "--conversations FILE" in no_data.output
