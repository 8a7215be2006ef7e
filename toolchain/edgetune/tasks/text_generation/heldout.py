"""Held-out conversations for the checks after fine-tuning: the splits a chat model recorded, or a file.

Export's parity gate, quantisation scoring and evaluation all read their prompts here, so they score
the same conversations the fine-tuning run held out (validation to choose, test to report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edgetune.data.chat import ChatExample, load_chat_data
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import read_stage_manifest

HeldOutSplit = Literal["validation", "test"]


def recorded_chat_config(model_dir: Path) -> ChatDataConfig | None:
    """The chat data config `edgetune finetune --task chat` recorded, or None for a model trained elsewhere."""
    record = (read_stage_manifest(Path(model_dir)).get("data") or {}).get("config")
    return ChatDataConfig(**record) if record else None


def heldout_conversations(model_dir: Path, split: HeldOutSplit, file: str | None = None,
                          config_overrides: dict | None = None) -> list[ChatExample]:
    """The `split` conversations of the data `model_dir` was trained on, or every conversation of `file`.

    With `file`, its rows are read with the recorded column settings where there are some; without a
    record and without a file, a one-line error says which option to pass.
    """
    recorded = recorded_chat_config(model_dir)
    if file is not None:
        columns = ("prompt_column", "response_column", "intent_column", "system_prompt")
        settings = {key: value for key, value in vars(recorded).items() if key in columns} if recorded else {}
        settings.update(config_overrides or {})
        # Read as a training file of its own: the validation carve-out is put back so every row is returned.
        data = load_chat_data(ChatDataConfig(train=file, **settings))
        return list(data.train.examples) + list(data.validation.examples)
    if recorded is None:
        raise EdgetuneError(f"{model_dir} records no chat data (it was not trained by `edgetune finetune --task "
                            f"chat`); pass a held-out conversations file")
    if config_overrides:
        recorded = ChatDataConfig(**{**vars(recorded), **config_overrides})
    for key in ("train", "validation", "test"):
        value = getattr(recorded, key)
        if value and not Path(value).exists():
            raise EdgetuneError(f"{model_dir} records its {key} data at {value}, which is not on this machine; "
                                f"pass a held-out conversations file")
    data = load_chat_data(recorded)
    chosen = data.validation if split == "validation" else data.test
    if chosen is None:
        raise EdgetuneError(f"{model_dir} was trained without a {split} split; pass a held-out conversations file")
    return list(chosen.examples)
