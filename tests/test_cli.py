"""The command line: instant help, one-line errors with exit code 2, multi-process training via Accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import write_csv

EDGETUNE = [sys.executable, "-m", "edgetune"]


def run(arguments: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    environment = env or (os.environ | {"HF_HUB_OFFLINE": "1"})
    return subprocess.run(arguments, capture_output=True, text=True, env=environment, timeout=600)


def test_help_is_instant_because_nothing_heavy_is_imported():
    probe = ("import sys; from edgetune.cli.main import cli; "
             "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft', 'pandas') if m in sys.modules]; "
             "print(','.join(heavy))")
    result = run([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    help_text = run([*EDGETUNE, "finetune", "--help"]).stdout
    assert "--lora-r" in help_text and "--resume" in help_text and "accelerate launch" in help_text
    # Flags are named after the config keys, today's short names kept beside them, defaults shown.
    assert "--learning-rate, --lr" in help_text and "[default: 128]" in help_text


def _assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_training_file(tmp_path):
    _assert_one_line_error(run([*EDGETUNE, "data", "inspect", "--train", str(tmp_path / "nope.csv")]),
                           "file not found")


def test_bad_data_stops_finetune_before_training(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"text": "hello", "category": "a"}, {"text": " ", "category": "b"}])
    result = run([*EDGETUNE, "finetune", "--train", str(train), "-o", str(tmp_path / "out")])
    _assert_one_line_error(result, "row 2, column 'text': the text is empty")
    assert not (tmp_path / "out").exists()


def test_bad_hyperparameter(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"text": "hello", "category": "a"}])
    _assert_one_line_error(run([*EDGETUNE, "finetune", "--train", str(train), "-o", str(tmp_path / "o"),
                                "--lr", "-1"]), "--learning-rate: -1.0 must be greater than zero")
    _assert_one_line_error(run([*EDGETUNE, "finetune", "--train", str(train), "-o", str(tmp_path / "o"),
                                "--method", "lora", "--lora-r", "0"]), "--lora-r: 0 must be at least 1")


def test_unknown_model(tmp_path, small_banking77):
    result = run([*EDGETUNE, "finetune", "--train", str(small_banking77["train"]), "-o", str(tmp_path / "o"),
                  "--model", "nobody/no-such-model"])
    _assert_one_line_error(result, "model 'nobody/no-such-model' not found")
    _assert_one_line_error(run([*EDGETUNE, "models", "pull", "bert-base-uncased"]), "is not published as a package")


def test_models_list_names_the_packaged_models():
    result = run([*EDGETUNE, "models", "list"])
    assert result.returncode == 0
    assert "sentence-transformers/all-MiniLM-L6-v2" in result.stdout
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in result.stdout


def test_data_inspect_writes_report(tmp_path, small_banking77):
    report_path = tmp_path / "report.json"
    result = run([*EDGETUNE, "data", "inspect", "--train", str(small_banking77["train"]),
                  "--test", str(small_banking77["test"]), "--report", str(report_path)])
    assert result.returncode == 0, result.stderr
    assert "leakage" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["splits"]["test"]["rows"] == 32 and report["length_unit"] == "words"


@pytest.mark.slow
def test_accelerate_launch_trains_with_two_cpu_processes(tmp_path, small_banking77, tiny_bert_dir):
    # `--multi_gpu` is Accelerate's torchrun launcher; without a GPU the processes meet over gloo on the CPU.
    output = tmp_path / "ddp"
    result = run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "-m", "edgetune", "finetune", "--model", str(tiny_bert_dir),
                  "--train", str(small_banking77["train"]), "--test", str(small_banking77["test"]),
                  "-o", str(output), "--epochs", "2", "--batch-size", "8"])
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((output / "edgetune.json").read_text())
    assert manifest["training"]["processes"] == 2
    # 88 training rows, batch 8 per process, 2 processes: 6 steps per epoch instead of 11.
    assert manifest["training"]["steps"] == 12
    assert json.loads((output / "metrics.json").read_text())["test"]["examples"] == 32


def test_unreachable_hub_dataset_is_one_line(tmp_path):
    result = run([*EDGETUNE, "data", "inspect", "--train", "someone/no-such-dataset"],
                 env=os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    _assert_one_line_error(result, "not a local file, and loading it as a hub dataset failed")


def test_export_quantize_bundle_refuse_wrong_inputs_in_one_line(tmp_path, tiny_finetuned_dir):
    _assert_one_line_error(run([*EDGETUNE, "export", str(tmp_path), str(tmp_path / "o")]), "no config.json")
    _assert_one_line_error(run([*EDGETUNE, "quantize", str(tiny_finetuned_dir), str(tmp_path / "q")]),
                           "not an `edgetune export` directory")
    _assert_one_line_error(run([*EDGETUNE, "bundle", str(tiny_finetuned_dir), str(tmp_path / "b")]),
                           "not an `edgetune export` or `edgetune quantize` output")
    _assert_one_line_error(run([*EDGETUNE, "quantize", str(tmp_path), str(tmp_path / "q"), "--variant", "int3"]),
                           "unknown variant 'int3'")


def test_quantize_then_bundle_from_the_command_line(tmp_path, tiny_export_dir):
    quantized, bundle = tmp_path / "int8", tmp_path / "bundle"
    result = run([*EDGETUNE, "quantize", str(tiny_export_dir), str(quantized), "--variant", "dynamic-int8",
                  "--latency-texts", "10", "--max-accuracy-drop", "100"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept " in result.stdout and (quantized / "quantize_report.json").is_file()
    result = run([*EDGETUNE, "bundle", str(quantized), str(bundle), "--zip"])
    assert result.returncode == 0, result.stderr[-2000:]
    verify = run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
                  "from edgetune_runtime.bundle import Bundle; "
                  f"b = Bundle.load({str(bundle.with_suffix('.zip'))!r}); print(b.verify().passed)"])
    assert verify.stdout.strip() == "True", verify.stderr
