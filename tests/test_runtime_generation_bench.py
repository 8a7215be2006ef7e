"""`edgetune-runtime bench` on a text-generation bundle: first token by prompt length, decode speed beside a bare
onnxruntime loop, quality of reference answers, one JSON per device that `edgetune report` merges."""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from chat_artifact import tiny_chat_bundle_dir, tiny_chat_onnx_dir  # noqa: F401 (session fixtures)
from click.testing import CliRunner

from conftest import BITEXT
from edgetune.cli.main import cli
from edgetune.report.merge import ReportConfig, report
from edgetune_runtime.bench import SCHEMA, SCHEMA_VERSION
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.tasks.generation.bench import GenerationBenchConfig, bench
from edgetune_runtime.tasks.generation.reference_scores import answer_nll

CLI = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
       "from edgetune_runtime.cli import main; sys.argv = ['edgetune-runtime', *sys.argv[1:]]; main()")


@pytest.fixture(scope="module")
def labelled_prompts(tmp_path_factory):
    """Real Bitext prompts with their reference answers, as a CSV with the dataset's own column names."""
    with open(BITEXT, newline="", encoding="utf-8") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), 12))
    path = tmp_path_factory.mktemp("prompts") / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=("instruction", "response"))
        writer.writeheader()
        writer.writerows({"instruction": row["instruction"], "response": row["response"]} for row in rows)
    return path


@pytest.fixture(scope="module")
def result(tiny_chat_bundle_dir, labelled_prompts):  # noqa: F811
    config = GenerationBenchConfig(data=str(labelled_prompts), threads=(1, 2), new_tokens=8, prompts_per_length=3,
                                   quality_rows=4, cold_starts=1, warmup=1, name="tiny-chat")
    return json.loads(json.dumps(bench(tiny_chat_bundle_dir, config, command=["test"]).to_dict()))


def test_generation_bench_json_has_the_device_the_bundle_and_sane_figures(result, tiny_chat_bundle_dir):  # noqa: F811
    assert result["schema"] == SCHEMA and result["schema_version"] == SCHEMA_VERSION
    assert result["task"] == "text-generation" and result["command"] == ["test"]
    assert result["device"]["onnxruntime"] and result["device"]["execution_provider"] == "CPUExecutionProvider"
    manifest = json.loads((tiny_chat_bundle_dir / "manifest.json").read_text())
    files_mb = sum((tiny_chat_bundle_dir / name).stat().st_size for name in manifest["files"]) / 2**20
    assert result["bundle"]["name"] == "tiny-chat" and result["bundle"]["size_mb"] == round(files_mb, 2)
    assert result["data"] == {"path": result["data"]["path"], "prompts": 12, "labelled": 12, "intent_labelled": 0}
    assert [run["threads"] for run in result["runs"]] == [1, 2]
    for run in result["runs"]:
        first = run["first_token"]
        counts = [first[length]["prompt_tokens"] for length in ("short", "medium", "long")]
        assert all(len(lengths) == 3 for lengths in counts)
        # Every medium prompt is longer than every short one, every long one longer than every medium one,
        # and the long ones fill the context beside the new tokens.
        assert max(counts[0]) < min(counts[1]) and max(counts[1]) < min(counts[2])
        assert max(counts[2]) <= 256 - 8
        for length in first.values():
            assert 0 < length["p50_ms"] <= length["p90_ms"]
        assert run["new_tokens"] == 8 and run["load_s"] > 0
        assert 0 < run["inter_token_p50_ms"] <= run["inter_token_p90_ms"] <= run["inter_token_p99_ms"]
        assert run["decode_tokens_per_s"] > 0 and run["bare_decode_tokens_per_s"] > 0
        assert run["overhead_fraction"] > -1
    assert 0 < result["cold_start"]["import_s"] < result["cold_start"]["median_s"]
    assert result["peak_rss_mb"] > 10
    quality = result["quality"]
    assert quality["rows"] == 4 and quality["reference_tokens"] > 4 and quality["perplexity"] > 1
    assert 0 <= quality["rouge_l"] <= 1 and quality["note"] is None


def test_perplexity_is_the_reference_answers_own_teacher_forced_loss(tiny_chat_bundle_dir):  # noqa: F811
    bundle = Bundle.load(tiny_chat_bundle_dir)
    # A short answer, so that it fits the tiny context whole.
    row = {"instruction": "where is my order?", "response": "It is on its way; I will send you the tracking number."}
    prompt_ids, answer_ids = bundle.reference_ids(row["instruction"], row["response"])
    assert answer_ids[-1] in bundle.generation.stop_token_ids  # the model is scored on ending its turn too
    assert bundle.tokenizer.decode(answer_ids, skip_special_tokens=True).strip() == row["response"].strip()
    logits = bundle.decoder.sequence_logits(prompt_ids + answer_ids)
    nll, count = answer_nll(logits, len(prompt_ids), answer_ids)
    # By hand: the log-softmax at each position before an answer token, of that token.
    by_hand = 0.0
    for position, token in enumerate(answer_ids):
        row_logits = [float(value) for value in logits[len(prompt_ids) + position - 1]]
        by_hand -= row_logits[token] - math.log(sum(math.exp(value) for value in row_logits))
    assert count == len(answer_ids) and nll == pytest.approx(by_hand, rel=1e-6)


def test_min_new_tokens_decodes_past_the_stop_token(tiny_chat_bundle_dir):  # noqa: F811
    bundle = Bundle.load(tiny_chat_bundle_dir)
    answer = bundle.generate("Where is my order?", max_new_tokens=30, min_new_tokens=30, temperature=0.0)
    assert len(answer.token_ids) == 30 and len(answer.inter_token_ms) == 29
    assert not set(answer.token_ids) & set(bundle.generation.stop_token_ids)
    with pytest.raises(InputError, match="min_new_tokens"):
        bundle.generate("hi", min_new_tokens=-1)


def test_without_rouge_score_the_runtime_skips_rouge_with_a_note(tiny_chat_bundle_dir, labelled_prompts,  # noqa: F811
                                                                 tmp_path):
    output = tmp_path / "bench.json"
    code = CLI.replace("sys.modules['torch']", "sys.modules['rouge_score'] = sys.modules['torch']")
    done = subprocess.run([sys.executable, "-c", code, "bench", str(tiny_chat_bundle_dir), "--data",
                           str(labelled_prompts), "--new-tokens", "4", "--prompts-per-length", "1",
                           "--quality-rows", "2", "--cold-starts", "0", "--warmup", "0", "-o", str(output)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    quality = json.loads(output.read_text())["quality"]
    assert quality["rouge_l"] is None and "rouge_score is not installed" in quality["note"]
    assert quality["perplexity"] > 1


def test_cli_bench_dispatches_on_the_task_and_writes_the_json(tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    output = tmp_path / "results" / "chat.json"
    # No --data: the bundle's golden prompts, which carry no reference answers.
    done = subprocess.run([sys.executable, "-c", CLI, "bench", str(tiny_chat_bundle_dir), "--threads", "1",
                           "--new-tokens", "4", "--prompts-per-length", "2", "--cold-starts", "1", "--warmup", "0",
                           "-o", str(output)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:3] == ["threads", "TTFT", "S"]
    payload = json.loads(output.read_text())
    assert payload["task"] == "text-generation" and payload["command"][:2] == ["edgetune-runtime", "bench"]
    assert payload["data"]["path"] == "golden prompts of the bundle" and payload["quality"] is None
    assert payload["cold_start"]["median_s"] > 0
    foreign = subprocess.run([sys.executable, "-c", CLI, "bench", str(tiny_chat_bundle_dir), "--batch-sizes", "1"],
                             capture_output=True, text=True)
    assert foreign.returncode == 2
    assert foreign.stderr.strip() == "error: --batch-sizes does not apply to a text-generation bundle; leave it out"


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "hello"}\n{"messages": "not a list"}\n', r"bad\.jsonl, line 2: messages: expected a non-empty list"),
    ('{"prompt": "hello"}\n{"prompt": 3}\n', r"bad\.jsonl, line 2, column 'prompt': expected the prompt as text"),
    ('{"prompt": "hello"}\n{not json\n', r"bad\.jsonl, line 2: not valid JSON"),
])
def test_a_bad_prompts_file_is_one_line(tiny_chat_bundle_dir, tmp_path, content, message):  # noqa: F811
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        bench(tiny_chat_bundle_dir, GenerationBenchConfig(data=str(path), cold_starts=0))
    done = subprocess.run([sys.executable, "-c", CLI, "bench", str(tiny_chat_bundle_dir), "--data", str(path),
                           "--cold-starts", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"error: {path}, line 2")


def test_report_merges_a_generation_result_beside_classification_ones(result, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(result))
    merged = report([chat], tmp_path / "chat-report", ReportConfig())
    markdown = (tmp_path / "chat-report" / "report.md").read_text()
    run = result["runs"][0]
    assert "| tiny-chat t1 |" in markdown and "| tiny-chat t2 |" in markdown
    assert f"{run['decode_tokens_per_s']:.1f}" in markdown and f"{result['quality']['perplexity']:.3f}" in markdown
    assert merged.rows == [] and "first token ms (short / medium / long)" in merged.table
    assert not (tmp_path / "chat-report" / "pareto.png").exists()  # nothing to plot accuracy of

    # Beside a classification result (as an older device wrote it, with no task named): both tables, one plot.
    classifier = {"schema": SCHEMA, "schema_version": 2, "device": result["device"], "bundle": {
        "name": "minilm-int8", "size_mb": 21.9}, "runs": [{"threads": 1, "batch_size": 1, "accuracy": 0.9,
                                                          "p50_ms": 3.1, "p90_ms": 3.5, "throughput_texts_per_s": 300}]}
    (tmp_path / "classifier.json").write_text(json.dumps(classifier))
    done = CliRunner().invoke(cli, ["report", str(chat), str(tmp_path / "classifier.json"), "-o",
                                    str(tmp_path / "both")])
    assert done.exit_code == 0, done.output
    assert "| minilm-int8 t1 |" in done.output and "| tiny-chat t2 |" in done.output
    assert "Pareto front: minilm-int8 t1" in done.output and (tmp_path / "both" / "pareto.png").is_file()


def test_the_bench_records_its_engine_and_times_that_engine_bare(result, tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    pytest.importorskip("onnxruntime_genai")
    assert result["engine"] == {"name": "onnxruntime-genai", "version": result["engine"]["version"],
                                "chosen_as": "auto"}
    plain = bench(tiny_chat_bundle_dir, GenerationBenchConfig(engine="onnxruntime", new_tokens=4, prompts_per_length=1,
                                                              cold_starts=1, warmup=0, quality_rows=0)).to_dict()
    assert plain["engine"]["name"] == "onnxruntime" and plain["engine"]["chosen_as"] == "onnxruntime"
    assert plain["runs"][0]["bare_decode_tokens_per_s"] > 0 and plain["cold_start"]["median_s"] > 0
    with pytest.raises(InputError, match="--engine: 'fast' is not one of"):
        GenerationBenchConfig(engine="fast")


@pytest.fixture(scope="module")
def judge_bundle(tmp_path_factory, tiny_export_dir) -> Path:
    """A tiny classification bundle (Banking77 intents) standing in for the intent judge."""
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig

    return build_bundle(tiny_export_dir, tmp_path_factory.mktemp("judge") / "bundle",
                        BundleConfig(golden_examples=2)).directory


def test_intent_fidelity_is_the_share_of_answers_the_judge_reads_as_the_prompts_intent(  # noqa: F811
        tiny_chat_bundle_dir, judge_bundle, tmp_path):  # noqa: F811
    from edgetune_runtime.tasks.generation.bench import GREEDY
    from edgetune_runtime.tasks.generation.reference_scores import judged_intents

    chat, judge = Bundle.load(tiny_chat_bundle_dir), Bundle.load(judge_bundle)
    with open(BITEXT, newline="", encoding="utf-8") as handle:
        instructions = [row["instruction"] for row in itertools.islice(csv.DictReader(handle), 4)]
    answers = [chat.generate(text, max_new_tokens=6, truncate=True, **GREEDY).text.strip() for text in instructions]
    verdicts = judged_intents(judge, answers)
    assert None not in verdicts
    # The first two prompts are labelled with the intent the judge reads in their answers, the last two with
    # another of its labels: fidelity must come out at exactly one half.
    other = {verdict: next(label for label in judge.labels if label != verdict) for verdict in verdicts}
    intents = verdicts[:2] + [other[verdict] for verdict in verdicts[2:]]
    data = tmp_path / "labelled.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "intent"])
        writer.writerows(zip(instructions, intents, strict=True))
    config = GenerationBenchConfig(data=str(data), judge=str(judge_bundle), new_tokens=6, prompts_per_length=1,
                                   cold_starts=0, warmup=0)
    judged = json.loads(json.dumps(bench(tiny_chat_bundle_dir, config).to_dict()))
    quality = judged["quality"]
    assert quality["intent_fidelity"] == 0.5 and quality["judged_rows"] == 4
    assert quality["judge"] == str(judge_bundle.resolve()) and quality["rows"] == 0 and quality["perplexity"] is None
    from edgetune.report.generation import generation_table

    table = generation_table([(tmp_path / "judged.json", judged)])
    assert "intent fidelity |" in table.splitlines()[0] and table.splitlines()[-1].endswith("| 50.0% |")

    # Labels the judge does not know, a file without labels, a judge that is no classifier: one line each.
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("instruction,intent\nwhere is my order,track_order\n")
    with pytest.raises(InputError, match=r"unknown\.csv, row 1: intent 'track_order' is not one of the judge's 4"):
        bench(tiny_chat_bundle_dir, GenerationBenchConfig(data=str(unknown), judge=str(judge_bundle), cold_starts=0))
    done = subprocess.run([sys.executable, "-c", CLI, "bench", str(tiny_chat_bundle_dir), "--judge", str(judge_bundle),
                           "--cold-starts", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: --judge: the prompts carry no intent labels")
    with pytest.raises(BundleError, match="--judge: .* a 'text-generation' bundle is a GenerationBundle, not a "
                                        "ClassificationBundle"):
        bench(tiny_chat_bundle_dir, GenerationBenchConfig(data=str(data), judge=str(tiny_chat_bundle_dir),
                                                          cold_starts=0))
