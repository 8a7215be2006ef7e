"""Hardening round 2, item 2: divergence is an error, never a saved model.

`finetune --lr 1e8` on the tiny real BERT must stop with one `error:` line, exit non-zero and leave no
model at the output path; the check itself must see a NaN in any trainable tensor.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from edgetune.data.config import DataConfig
from edgetune.finetune.config import FinetuneConfig
from edgetune.finetune.divergence import TrainingDiverged, first_non_finite_parameter
from edgetune.finetune.train import finetune, work_directory_for


def _one_error_line(stderr: str) -> str:
    # The progress bar redraws with carriage returns; the error line follows its last redraw.
    errors = [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def test_finetune_with_a_huge_learning_rate_stops_with_one_line_and_writes_nothing(tmp_path, small_banking77,
                                                                                 tiny_bert_dir):
    output = tmp_path / "diverged"
    result = subprocess.run(
        [sys.executable, "-m", "edgetune", "finetune", "--model", str(tiny_bert_dir),
         "--train", str(small_banking77["train"]), "--test", str(small_banking77["test"]), "-o", str(output),
         "--lr", "1e8", "--epochs", "2", "--batch-size", "8"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    line = _one_error_line(result.stderr)
    assert "training diverged at step" in line and "no model was written" in line and "1e+08" in line
    assert "model written" not in result.stderr
    assert not output.exists()


def test_a_nan_weight_in_the_model_stops_the_shared_training_loop(tmp_path, small_banking77, tiny_bert_dir):
    # Corrupted inputs (here: a NaN planted in the classifier's bias before the first step) end the same way.
    from transformers import TrainerCallback

    class PlantNaN(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                model.classifier.bias[0] = float("nan")

    # A checkpoint every step: the diverged step must not be saved, or a --resume would start from NaN weights.
    config = FinetuneConfig(model=str(tiny_bert_dir), epochs=1, batch_size=8, eval_steps=1,
                            early_stopping_patience=None)
    data = DataConfig(train=str(small_banking77["train"]))
    output = tmp_path / "planted"
    with pytest.raises(TrainingDiverged, match=r"step 1: weight \S+ became NaN or infinite"):
        finetune(data, config, output, extra_callbacks=[PlantNaN()])
    assert not output.exists()
    assert not list((work_directory_for(output) / "checkpoints").glob("checkpoint-*"))


def test_the_weight_check_finds_the_tensor_and_ignores_huge_finite_weights():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    assert first_non_finite_parameter(model) is None
    with torch.no_grad():
        model[0].weight.fill_(3e38)  # each value finite, their sum overflows float32
    assert first_non_finite_parameter(model) is None
    with torch.no_grad():
        model[1].bias[1] = float("inf")
    assert first_non_finite_parameter(model) == "1.bias"
    model[1].bias.requires_grad_(False)  # frozen tensors cannot diverge through training
    assert first_non_finite_parameter(model) is None
