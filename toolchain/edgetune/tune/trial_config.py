"""A trial's training config: the tune config's base settings with the trial's drawn values put in."""

from __future__ import annotations

from typing import Any

from edgetune.configuration import build_config, config_to_dict
from edgetune.distill.config import DistillConfig
from edgetune.finetune.config import FinetuneConfig
from edgetune.tune.space import DISTILLATION_PARAMETERS, QUANTIZATION_PARAMETERS


def trial_training_config(config, params: dict[str, Any]) -> FinetuneConfig | DistillConfig:
    """The `FinetuneConfig` (or, with a teacher, `DistillConfig`) a trial trains with.

    Built through `build_config`, the path a recipe takes, so a drawn value gets the same checks and
    conversions (`layers: "0,2,4"` -> (0, 2, 4)) as one typed by hand.
    """
    student = config_to_dict(config.base)
    for name, value in params.items():
        if name in DISTILLATION_PARAMETERS or name in QUANTIZATION_PARAMETERS:
            continue  # distillation settings are added below; the int8 variant is the trial's quantize step
        if name == "num_layers":
            student["layers"] = None  # the two name the same thing; the drawn one wins
        if name == "layers":
            student["num_layers"] = None
        node = student
        *parents, leaf = name.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    if config.teacher is None:
        return build_config(FinetuneConfig, student, "base")
    distill = {"teacher": config.teacher, "student": student, "temperature": config.temperature,
               "alpha": config.alpha, "transfer_text": config.transfer_text}
    distill.update({name: value for name, value in params.items() if name in DISTILLATION_PARAMETERS})
    return build_config(DistillConfig, distill, "distill")
