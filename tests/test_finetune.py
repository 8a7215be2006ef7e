"""Fine-tuning on a tiny real BERT: outputs, LoRA merging, exact resume, early stopping, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.finetune.config import FinetuneConfig, LoraSettings
from edgetune.finetune.train import finetune, work_directory_for
from edgetune_runtime.hashing import sha256_file


class SimulatedCrash(Exception):
    """Stands in for a killed process: raised right after the trainer saved a checkpoint."""


class CrashAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedCrash(f"killed after step {self.step}")


def _data(small_banking77) -> DataConfig:
    return DataConfig(train=str(small_banking77["train"]), test=str(small_banking77["test"]))


def _config(tiny_bert_dir, **overrides) -> FinetuneConfig:
    settings = {"model": str(tiny_bert_dir), "epochs": 2, "learning_rate": 2e-3, "batch_size": 8,
                "logging_steps": 5, "early_stopping_patience": None} | overrides
    return FinetuneConfig(**settings)


def _accuracy_of_saved_model(model_dir, texts, labels) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
    predicted = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    return float(numpy.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def test_full_finetune_writes_a_complete_model_directory(tmp_path, small_banking77, tiny_bert_dir):
    output = tmp_path / "model"
    result = finetune(_data(small_banking77), _config(tiny_bert_dir), output)

    names = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "data_report.json",
            "training_curves.csv", "training_curves.png", "edgetune.json"} <= names
    assert not work_directory_for(output).exists(), "checkpoints are removed after success"
    assert not [n for n in output.parent.iterdir() if n.name.startswith(".model.tmp")]

    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test"}
    test_metrics = metrics["test"]
    assert test_metrics["examples"] == 32 and len(test_metrics["confusion_matrix"]) == 4
    assert sum(map(sum, test_metrics["confusion_matrix"])) == 32
    assert set(test_metrics["per_class"]) == set(test_metrics["labels"])
    assert result.metrics["test"]["accuracy"] == test_metrics["accuracy"]

    manifest = json.loads((output / "edgetune.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["labels"] == test_metrics["labels"]
    for name, digest in manifest["files"].items():
        assert sha256_file(output / name) == digest, name
    assert manifest["base_model"]["source"] == "local path"
    # Later stages rebuild the splits from this record, from whatever directory they run in.
    assert Path(manifest["data"]["config"]["train"]).is_absolute()

    curve_lines = (output / "training_curves.csv").read_text().splitlines()
    assert curve_lines[0].startswith("step,epoch,train_loss") and len(curve_lines) >= 4

    # What the manifest reports is what the saved model does.
    data = load_labelled_data(_data(small_banking77))
    saved_accuracy = _accuracy_of_saved_model(output, data.test.texts, data.test.labels)
    assert saved_accuracy == pytest.approx(test_metrics["accuracy"])


def test_lora_adapters_are_merged_into_a_plain_model(tmp_path, small_banking77, tiny_bert_dir):
    output = tmp_path / "lora"
    config = _config(tiny_bert_dir, method="lora", learning_rate=5e-3, lora=LoraSettings(r=4, alpha=8))
    result = finetune(_data(small_banking77), config, output)
    from safetensors.torch import load_file

    keys = load_file(output / "model.safetensors").keys()
    assert not [key for key in keys if "lora" in key], "adapters must be merged, not saved beside the weights"
    manifest = json.loads((output / "edgetune.json").read_text())
    trainable = manifest["training"]["trainable_parameters"]
    total = sum(t.numel() for t in load_file(output / "model.safetensors").values())
    assert trainable < total / 2, "LoRA trains a fraction of the weights"
    data = load_labelled_data(_data(small_banking77))
    merged_accuracy = _accuracy_of_saved_model(output, data.validation.texts, data.validation.labels)
    assert merged_accuracy == pytest.approx(result.metrics["validation"]["accuracy"])


def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tmp_path, small_banking77, tiny_bert_dir):
    config = _config(tiny_bert_dir, epochs=3, eval_steps=5)
    straight = finetune(_data(small_banking77), config, tmp_path / "straight")

    crashed_output = tmp_path / "crashed"
    with pytest.raises(SimulatedCrash):
        finetune(_data(small_banking77), config, crashed_output, extra_callbacks=[CrashAfterSave(10)])
    assert not crashed_output.exists(), "an interrupted run leaves nothing at the destination"
    assert (work_directory_for(crashed_output) / "checkpoints" / "checkpoint-10").is_dir()

    with pytest.raises(EdgetuneError, match="pass --resume to continue it"):
        finetune(_data(small_banking77), config, crashed_output)
    with pytest.raises(ConfigError, match=r"config\.learning_rate differs"):
        finetune(_data(small_banking77), _config(tiny_bert_dir, epochs=3, eval_steps=5, learning_rate=1e-3),
                 crashed_output, resume=True)

    resumed = finetune(_data(small_banking77), config, crashed_output, resume=True)
    assert resumed.metrics["validation"]["accuracy"] == straight.metrics["validation"]["accuracy"]
    assert resumed.metrics["test"]["confusion_matrix"] == straight.metrics["test"]["confusion_matrix"]
    from safetensors.torch import load_file

    straight_weights = load_file(tmp_path / "straight" / "model.safetensors")
    resumed_weights = load_file(crashed_output / "model.safetensors")
    for name, tensor in straight_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_early_stopping_ends_training_when_validation_stalls(tmp_path, small_banking77, tiny_bert_dir):
    # A learning rate this small cannot change the argmax, so accuracy never improves after the first evaluation.
    config = _config(tiny_bert_dir, epochs=10, learning_rate=1e-12, early_stopping_patience=1)
    result = finetune(_data(small_banking77), config, tmp_path / "stalled")
    manifest = json.loads((tmp_path / "stalled" / "edgetune.json").read_text())
    assert manifest["training"]["epochs_run"] == pytest.approx(2.0)
    assert result.best_step == 11  # the first evaluation (88 rows / batch 8) stays the best


def test_existing_output_is_refused_before_any_work(tmp_path, small_banking77, tiny_bert_dir):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "keep.txt").write_text("precious")
    with pytest.raises(EdgetuneError, match="already exists; .* --force"):
        finetune(_data(small_banking77), _config(tiny_bert_dir), output)
    assert (output / "keep.txt").read_text() == "precious"


def test_resume_without_a_checkpoint_is_refused(tmp_path, small_banking77, tiny_bert_dir):
    with pytest.raises(EdgetuneError, match="nothing to resume"):
        finetune(_data(small_banking77), _config(tiny_bert_dir), tmp_path / "fresh", resume=True)
