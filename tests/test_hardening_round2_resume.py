"""Hardening round 2, item 3 (resume): `--resume` refuses checkpoints trained under another label map.

Before the label order was a pure function of the data, a run interrupted under one PYTHONHASHSEED
and resumed under another could swap two classes silently. The run record now holds the label map;
a record whose map differs from the data's (or that has none: an older edgetune wrote it) is refused.
"""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import ConfigError
from edgetune.finetune.config import FinetuneConfig
from edgetune.finetune.train import RUN_RECORD, finetune, work_directory_for


class CrashAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt  # stands in for a killed process, right after the first checkpoint


def _interrupted_run(tmp_path, small_banking77, tiny_bert_dir):
    data = DataConfig(train=str(small_banking77["train"]))
    config = FinetuneConfig(model=str(tiny_bert_dir), epochs=1, batch_size=8, eval_steps=3,
                            early_stopping_patience=None)
    output = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        finetune(data, config, output, extra_callbacks=[CrashAfterSave()])
    return data, config, output, work_directory_for(output) / RUN_RECORD


def _edit_record(record_path, change) -> None:
    record = json.loads(record_path.read_text())
    change(record)
    record_path.write_text(json.dumps(record))


@pytest.mark.parametrize("swap", [True, False], ids=["swapped_labels", "record_without_labels"])
def test_resume_refuses_a_checkpoint_with_another_label_map(tmp_path, small_banking77, tiny_bert_dir, swap):
    data, config, output, record_path = _interrupted_run(tmp_path, small_banking77, tiny_bert_dir)
    labels = load_labelled_data(data).label_names
    # What another hash seed did to the old code: the same data, two classes in the other order.
    swapped = [labels[1], labels[0], *labels[2:]]
    _edit_record(record_path, lambda record: record.update(labels=swapped) if swap else record.pop("labels", None))
    with pytest.raises(ConfigError) as raised:
        finetune(data, config, output, resume=True)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot resume: labels differs")
    assert "--force" in message
    assert not output.exists()


def test_resume_with_the_same_label_map_still_continues(tmp_path, small_banking77, tiny_bert_dir):
    data, config, output, record_path = _interrupted_run(tmp_path, small_banking77, tiny_bert_dir)
    assert json.loads(record_path.read_text())["labels"] == load_labelled_data(data).label_names
    result = finetune(data, config, output, resume=True)
    assert (output / "model.safetensors").is_file() and result.best_step is not None
