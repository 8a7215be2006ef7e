"""The search space of `edgetune tune`: which training settings a trial may change, and over what range.

Each parameter names a training setting by its recipe key (`learning_rate`, `lora.r`, `num_layers`;
`temperature` and `alpha` when a teacher is given) and says its type (int, float or categorical), its
range or choices and whether it is searched on a log scale. `int8_variant` searches the int8 graph
itself (per-tensor or per-channel weight scales, exact or tanh GELU): what int8 costs in accuracy
differs by model, so it is searched with the training that made the model. Everything here is
checked before any compute: unknown names, a type the setting cannot take, an empty or inverted
range, a log range through zero, and range ends or choices the training config itself refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgetune.configuration import setting
from edgetune.errors import ConfigError
from edgetune.quantize.variants import dynamic_variant_names

# The settings a trial may change, by recipe key, and the Python type each takes. Student settings are
# the fine-tuning config's keys (under distillation they apply to the student); DISTILLATION_PARAMETERS belong
# to distillation and need a teacher.
TRAINING_PARAMETERS: dict[str, type] = {
    "learning_rate": float, "epochs": float, "warmup_ratio": float, "label_smoothing": float,
    "weight_decay": float, "batch_size": int, "max_length": int, "num_layers": int, "layers": tuple,
    "method": str, "lr_scheduler": str, "lora.r": int, "lora.alpha": int, "lora.dropout": float,
}
DISTILLATION_PARAMETERS: dict[str, type] = {"temperature": float, "alpha": float, "hidden_weight": float,
                                             "augment_copies": int, "augment_probability": float}
# How a trial's model becomes its int8 graph: one of the dynamic int8 variants (or a preset naming one) of
# `edgetune quantize`. Static ones need calibration texts a trial's time budget does not give them.
QUANTIZATION_PARAMETERS: dict[str, type] = {"int8_variant": str}
SEARCHABLE = {**TRAINING_PARAMETERS, **DISTILLATION_PARAMETERS, **QUANTIZATION_PARAMETERS}
Choice = bool | int | float | str


@dataclass
class SearchParameter:
    """One searched setting: its type, and a range (int, float) or choices (categorical)."""

    type: Literal["int", "float", "categorical"] = setting(
        help="int and float draw from [low, high]; categorical picks one of choices.")
    low: float | None = setting(None, help="Smallest value (int and float).")
    high: float | None = setting(None, help="Largest value, included (int and float).")
    log: bool = setting(False, help="Draw on a log scale: for rates that span decades, such as learning_rate.")
    step: float | None = setting(None, help="Draw only low, low+step, ... (int and float; not with log).")
    choices: tuple[Any, ...] | None = setting(
        None, help="The values a categorical parameter may take (numbers, text, true/false; `layers` subsets "
                   "as text such as \"0,2,4\").")

    def __post_init__(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("choices: a categorical parameter needs at least one choice, e.g. [full, lora]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ConfigError("choices: a categorical parameter takes choices only, not low/high/log/step")
            for choice in self.choices:
                if not isinstance(choice, Choice):
                    raise ConfigError(f"choices: {choice!r} is not a number, text or true/false")
            self.choices = tuple(self.choices)
            return
        if self.choices is not None:
            raise ConfigError(f"choices: only a categorical parameter has choices; this one is {self.type} "
                              "(give low and high)")
        if self.low is None or self.high is None:
            raise ConfigError(f"{'low' if self.low is None else 'high'}: {self.type} parameters need low and high")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and float(value) != int(value):
                    raise ConfigError(f"{name}: {value} must be a whole number for an int parameter")
                if value is not None:
                    setattr(self, name, int(value))
        if self.low > self.high:
            raise ConfigError(f"low: {self.low} is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ConfigError(f"low: {self.low} must be greater than zero on a log scale (log: true)")
        if self.log and self.step is not None:
            raise ConfigError("step: a log-scale parameter cannot have a step; drop one of them")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"step: {self.step} must be greater than zero")

    def extremes(self) -> list[Choice]:
        """The values that bound what a trial can draw: both ends of a range, every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def suggest(self, trial, name: str) -> Choice:
        """Draw this parameter's value for an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


DEFAULT_SPACE: dict[str, dict] = {
    # What moves a small encoder's accuracy most on intent data (measured on Banking77 with MiniLM);
    # structure (num_layers, max_length) is left to the user, who knows the model's depth and texts.
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
    "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
}


def check_space(space: dict[str, SearchParameter], has_teacher: bool) -> None:
    """Refuse parameters no trial could use; `space.<name>: ...` names the offending entry."""
    if not space:
        raise ConfigError("space: empty; name at least one setting to search, e.g. learning_rate")
    for name, parameter in space.items():
        where = f"space.{name}"
        if name not in SEARCHABLE:
            raise ConfigError(f"{where}: not a searchable setting; searchable: {', '.join(SEARCHABLE)}")
        if name in DISTILLATION_PARAMETERS and not has_teacher:
            raise ConfigError(f"{where}: a distillation setting, but no teacher is given; pass teacher or drop it")
        expected = SEARCHABLE[name]
        if expected in (str, tuple) and parameter.type != "categorical":
            raise ConfigError(f"{where}: {name} takes named values; use type categorical with choices")
        if expected is int and parameter.type == "float":
            raise ConfigError(f"{where}: {name} is a whole number; use type int (or categorical)")
        if name in QUANTIZATION_PARAMETERS:
            allowed = dynamic_variant_names()
            for choice in parameter.choices:
                if choice not in allowed:
                    raise ConfigError(f"{where}: {choice!r} is not a dynamic int8 variant; choose from "
                                      f"{', '.join(allowed)}")
    if "layers" in space and "num_layers" in space:
        raise ConfigError("space.layers: search layers or num_layers, not both (they set the same thing)")
