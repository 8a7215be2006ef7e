"""Where chat data comes from, which columns hold it, and how its held-out split is carved."""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.configuration import setting
from edgetune.data.config import check_validation_fraction
from edgetune.errors import ConfigError


@dataclass
class ChatDataConfig:
    """A dataset of prompt -> response pairs, or of `messages` conversations, for supervised fine-tuning."""

    train: str = setting(help="Training conversations: a CSV/TSV/JSONL/Parquet path with prompt/response columns, "
                              "or JSONL with a `messages` list of {role, content} per row.")
    validation: str | None = setting(None, help="Validation conversations used for model selection. Default: a "
                                                "share of train carved with split_seed (validation_fraction).")
    test: str | None = setting(None, help="Held-out conversations reported at the end and never used to choose "
                                          "anything.")
    prompt_column: str | None = setting(None, help="Column holding the user's prompt. Default: the first of "
                                                   "instruction, prompt, question, input that exists.")
    response_column: str | None = setting(None, help="Column holding the assistant's answer. Default: the first of "
                                                     "response, completion, answer, output that exists.")
    intent_column: str | None = setting(None, help="Column the validation carve is stratified by. Default: intent "
                                                   "or category when one exists; none otherwise.")
    system_prompt: str | None = setting(None, help="A system turn put before every conversation that has none.")
    allow_duplicate_prompts: bool = setting(False, help="Keep training rows whose prompt repeats an earlier row's "
                                                        "(counted in the notes) instead of refusing the file.")
    validation_fraction: float = setting(
        0.1, help="Share of each intent carved off for validation when no validation data is given.")
    test_fraction: float = setting(
        0.0, help="Share of each intent carved off train as a held-out test split when no test data is given "
                  "(0: none). Carved before validation, so the two never share a prompt; only reported, never "
                  "used to choose anything.")
    split_seed: int = setting(42, help="Seed of the validation (and test) carve-out, so every run selects on the "
                                       "same rows.")

    def __post_init__(self) -> None:
        if not self.train or not str(self.train).strip():
            raise ConfigError("train: a training data path is required")
        check_validation_fraction(self.validation_fraction)
        if not 0.0 <= self.test_fraction < 0.5:
            raise ConfigError(f"test_fraction: {self.test_fraction} is outside [0, 0.5); 0.1 is typical, 0 carves "
                              "no test split")
        if self.test and self.test_fraction:
            raise ConfigError("test_fraction: a test file is given too; drop one (test_fraction carves a test split "
                              "only when there is no test file)")
        if self.system_prompt is not None and not self.system_prompt.strip():
            raise ConfigError("system_prompt: is empty; leave it out, or write the system instruction")
