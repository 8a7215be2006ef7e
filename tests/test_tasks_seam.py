"""The seam's refusals: an input of another task stops a stage in one line, before any compute."""

from __future__ import annotations

import json
import shutil

import pytest

from edgetune.errors import ConfigError


def test_resume_refuses_checkpoints_of_a_run_that_trained_another_task(tmp_path, tiny_bert_dir, small_banking77):
    from edgetune.data.config import DataConfig
    from edgetune.finetune.config import FinetuneConfig
    from edgetune.finetune.train import RUN_RECORD, finetune, work_directory_for

    output = tmp_path / "model"
    work_dir = work_directory_for(output)
    (work_dir / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (work_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    # The task is the first thing a run records, so it is the difference reported.
    (work_dir / RUN_RECORD).write_text(json.dumps({"task": "feature-extraction"}))
    with pytest.raises(ConfigError, match="cannot resume: task differs from the interrupted run") as error:
        finetune(DataConfig(train=str(small_banking77["train"])), FinetuneConfig(model=str(tiny_bert_dir)), output,
                 resume=True)
    assert "\n" not in str(error.value) and not output.exists()


def test_a_teacher_of_another_task_is_refused(tiny_finetuned_dir, tmp_path):
    from edgetune.distill.teacher_logits import teacher_record

    labels = json.loads((tiny_finetuned_dir / "edgetune.json").read_text())["labels"]
    assert teacher_record(tiny_finetuned_dir, labels)["labels"] == labels
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_finetuned_dir, teacher)
    manifest = json.loads((teacher / "edgetune.json").read_text())
    (teacher / "edgetune.json").write_text(json.dumps(manifest | {"task": "feature-extraction"}))
    with pytest.raises(ConfigError, match="teacher: .* is a 'feature-extraction' model .*; distil from a "
                                          "text-classification model"):
        teacher_record(teacher, labels)


def test_fine_tuned_models_record_their_task(tiny_finetuned_dir):
    assert json.loads((tiny_finetuned_dir / "edgetune.json").read_text())["task"] == "text-classification"
