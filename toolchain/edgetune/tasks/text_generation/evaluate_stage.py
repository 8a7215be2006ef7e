"""The chat recipe's `evaluate` stage: the base model, the fine-tuned model and the shipped variant, side by side.

It reads the quantised (or exported) chat artifact the bundle is made from, names the fine-tuned
model (an earlier stage) and the base model it started from, and scores all three with
`evaluate_chat` on the same held-out test prompts: whether fine-tuning helped, and what
quantisation cost, in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig
from edgetune.tasks.text_generation.sft_config import DEFAULT_CHAT_MODEL


@dataclass
class ChatEvaluateStageConfig(ChatEvaluateConfig):
    """`ChatEvaluateConfig` plus the models compared with the stage's input."""

    base: str = setting(DEFAULT_CHAT_MODEL, help="The model before fine-tuning (a directory, .gguf or packaged id): "
                                                 "the row every other is compared with.")
    finetuned: str | None = setting(None, help="The fine-tuned PyTorch model: an earlier finetune stage's name in a "
                                               "recipe, or its directory. Absent: only base and the input are scored.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base or not str(self.base).strip():
            raise ConfigError("base: name the model fine-tuning started from, e.g. " + DEFAULT_CHAT_MODEL)


def evaluate_stage(input_dir: Path, output_dir: Path, config: ChatEvaluateStageConfig):
    """Score base, fine-tuned (when named) and `input_dir` (the shipped variant) into `output_dir`."""
    from edgetune.configuration import config_to_dict
    from edgetune.models.gguf_dir import resolve_model_directory
    from edgetune.stage_manifest import read_stage_manifest
    from edgetune.tasks.text_generation.evaluate import evaluate_chat

    variant = read_stage_manifest(Path(input_dir)).get("variant") or "onnx"
    models = [("base", resolve_model_directory(config.base).path)]
    if config.finetuned:
        models.append(("finetuned-fp32", Path(config.finetuned)))
    models.append((f"finetuned-{variant}", Path(input_dir)))
    settings = {key: value for key, value in config_to_dict(config).items() if key not in ("base", "finetuned")}
    return evaluate_chat(models, ChatEvaluateConfig(**settings), output_dir)
