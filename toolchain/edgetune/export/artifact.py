"""An ONNX model directory as quantize and bundle read it: an edgetune stage output, or a foreign export.

A directory `edgetune export`/`quantize` wrote carries its task, labels and max length in
edgetune.json. One that `optimum-cli export onnx` (or anyone) wrote has only model.onnx, the
tokenizer and config.json: its task is told from config.json's architectures, its labels from
`id2label`, its max length from the tokenizer config; it records no data, so held-out text must
be passed (`--validation FILE`).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import read_stage_manifest
from edgetune.tasks import Task, get_task, registered_tasks, task_for_model_config

MODEL_FILE = "model.onnx"
# Longest input a graph is fed when nothing recorded a training max length: BERT-style position
# tables stop at 512, and tokenizers without a limit report a huge sentinel.
LONGEST_DEFAULT_MAX_LENGTH = 512
FOREIGN_STAGE = "foreign"


def default_max_length(tokenizer_limit: object) -> int:
    """The tokenizer's limit, capped; tokenizers without one report a huge sentinel (int(1e30))."""
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        return min(tokenizer_limit, LONGEST_DEFAULT_MAX_LENGTH)
    return LONGEST_DEFAULT_MAX_LENGTH


def read_onnx_artifact(directory: Path, stages: tuple[str, ...], refusal: str) -> tuple[dict, Task]:
    """(the directory's stage record, its task); `refusal` starts the one-line error for anything else.

    The record of a foreign export has stage "foreign" and the keys later stages read: task,
    max_length, session (none), source, and the task's own (labels).
    """
    manifest = read_stage_manifest(directory)
    if not (directory / MODEL_FILE).is_file() or (manifest and manifest.get("stage") not in stages):
        found = f"an `edgetune {manifest['stage']}` output" if manifest.get("stage") else f"no {MODEL_FILE}"
        raise EdgetuneError(f"{directory}: {refusal} nor an ONNX export with {MODEL_FILE} and config.json ({found})")
    if manifest:
        return manifest, get_task(str(manifest.get("task")), where=str(directory / "edgetune.json"))
    return _foreign_record(directory, refusal)


def _foreign_record(directory: Path, refusal: str) -> tuple[dict, Task]:
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise EdgetuneError(f"{directory}: {refusal} nor an ONNX export with {MODEL_FILE} and config.json "
                            "(no config.json beside the graph)")
    model_config = json.loads(config_path.read_text(encoding="utf-8"))
    task = task_for_model_config(model_config)
    if task is None:
        raise EdgetuneError(f"{config_path}: cannot tell the task of this ONNX export (architectures "
                            f"{model_config.get('architectures')}); edgetune supports {', '.join(registered_tasks())}")
    tokenizer_config = directory / "tokenizer_config.json"
    limit = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("model_max_length") \
        if tokenizer_config.is_file() else None
    record = {"stage": FOREIGN_STAGE, "task": task.name,
              "max_length": default_max_length(limit),
              "session": {},
              "source": {"path": str(directory), "base_model": {"name": model_config.get("_name_or_path")},
                         "data": None},
              **task.model_record(model_config)}
    return record, task
