"""The settings of `edgetune tune`. Imports nothing heavy, so validation is instant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from edgetune.configuration import build_config, setting
from edgetune.errors import ConfigError
from edgetune.finetune.config import FinetuneConfig
from edgetune.tune.space import DEFAULT_SPACE, SearchParameter, check_space

STUDY_FILE = "study.db"
"""The default storage: a SQLite database in the run directory."""

_PICK = re.compile(r"^\s*(fastest-within|most-accurate-under|most-accurate)\s*([0-9.]+)?\s*(ms|mb)?\s*$",
                   re.IGNORECASE)


@dataclass(frozen=True)
class PickRule:
    """Which finished trial becomes the result."""

    kind: Literal["fastest-within", "most-accurate-under", "most-accurate"]
    value: float | None
    """Points of accuracy for fastest-within; milliseconds (or MB with unit mb) for most-accurate-under."""
    unit: Literal["points", "ms", "mb"] | None


def parse_pick(text: str) -> PickRule:
    """`fastest-within 0.5`, `most-accurate-under 2ms`, `most-accurate-under 30mb`, `most-accurate`."""
    match = _PICK.match(text)
    if not match:
        raise ConfigError(f"pick: {text!r} is not a rule; use `fastest-within 0.5` (points of accuracy below the "
                          "best), `most-accurate-under 2ms`, `most-accurate-under 30mb` or `most-accurate`")
    kind, number, unit = match.group(1).lower(), match.group(2), (match.group(3) or "").lower()
    if kind == "most-accurate":
        if number:
            raise ConfigError(f"pick: {text!r}: most-accurate takes no number")
        return PickRule("most-accurate", None, None)
    if not number:
        raise ConfigError(f"pick: {text!r}: {kind} needs a number, e.g. `{kind} "
                          f"{'0.5' if kind == 'fastest-within' else '2ms'}`")
    if kind == "fastest-within":
        if unit:
            raise ConfigError(f"pick: {text!r}: fastest-within takes points of accuracy, without a unit")
        return PickRule("fastest-within", float(number), "points")
    return PickRule("most-accurate-under", float(number), "mb" if unit == "mb" else "ms")


@dataclass
class TuneConfig:
    """How `edgetune tune` searches training settings for accuracy against measured int8 latency."""

    base: FinetuneConfig = setting(
        default_factory=FinetuneConfig,
        help="Training settings every trial starts from (model, epochs, batch size, ...); the searched ones are "
             "replaced by each trial's values. With a teacher these are the student's settings.")
    space: dict[str, SearchParameter] = setting(
        default_factory=dict,
        help="What to search: setting name -> {type: int|float|categorical, low, high, log, step, choices}. "
             "Default: learning_rate (log), warmup_ratio and label_smoothing.")
    teacher: str | None = setting(
        None, help="A fine-tuned teacher (an `edgetune finetune` output): trials then distil into the student "
                   "base.model, and temperature/alpha become searchable.")
    temperature: float = setting(2.0, help="Distillation temperature when a teacher is given and it is not searched.")
    alpha: float = setting(0.5, help="Weight of the soft-target loss when a teacher is given and it is not searched.")
    transfer_text: str | None = setting(
        None, help="Extra unlabelled text the teacher labels for every distilled trial (a .txt file, one text per "
                   "line, or a table with a text column; as distill's transfer_text). Trials drawing alpha 0 and "
                   "no hidden_weight leave it out: it would carry no loss.")
    mode: Literal["multi", "single"] = setting(
        "multi", help="multi: maximise the metric and minimise p50 latency together (NSGA-II), giving a Pareto "
                      "front; single: maximise the metric (TPE) under max_latency_ms or max_size_mb.")
    objective: Literal["accuracy", "macro_f1"] = setting(
        "accuracy", help="Validation metric of the int8 model to maximise (the test split is never read).")
    max_latency_ms: float | None = setting(
        None, help="single mode: a trial whose int8 p50 batch-1 latency is above this is infeasible.")
    max_size_mb: float | None = setting(None, help="single mode: a trial whose int8 model is larger is infeasible.")
    trials: int | None = setting(
        20, help="Trials the study should finish (complete or pruned), counted over every run and worker of it.")
    timeout_s: float | None = setting(
        None, aliases=("--timeout",), help="Start no new trial after this many seconds of this process.")
    budget_s: float | None = setting(
        None, aliases=("--budget",),
        help="Wall-clock budget of the whole study in seconds: the summed durations of its trials over every run "
             "and worker; no trial starts once it is spent.")
    storage: str | None = setting(
        None, help="Optuna storage URL: sqlite:///path.db, postgresql://user@host/db, mysql://..., or "
                   f"journal:PATH for a journal file. Default: {STUDY_FILE} in the run directory.")
    study: str = setting("edgetune-tune", help="Study name; workers given the same storage and study share trials.")
    sampler_seed: int | None = setting(
        None, help="Sampler seed (for a repeatable single worker; leave unset for several workers, or they would "
                   "draw the same trials).")
    pick: str = setting("fastest-within 0.5",
                        help="Which trial becomes the result: `fastest-within 0.5` (points of the best metric), "
                             "`most-accurate-under 2ms`, `most-accurate-under 30mb` or `most-accurate`.")
    pruning: bool = setting(
        True, help="Stop hopeless trials after an epoch: Optuna's median pruner in single mode; in multi mode "
                   "a trial below the best per-epoch metric by more than prune_margin points.")
    prune_margin: float = setting(
        20.0, help="multi mode: points of validation metric below the best trial's at the same epoch that stop "
                   "a trial (wide, since a weaker but faster model may still be on the front).")
    prune_after_epochs: int = setting(1, help="Epochs every trial runs before it may be pruned.")
    latency_texts: int = setting(100, help="Validation texts timed one at a time (batch 1) with the runtime.")
    threads: int = setting(1, help="ONNX Runtime threads while timing; 1 is what a phone app usually gets.")
    heartbeat_s: int = setting(
        30, help="How often a running trial tells the storage it is alive; a trial silent for 3 heartbeats "
                 "(its process was killed) is marked failed and its settings queued again.")
    keep_trials: bool = setting(
        False, help="Keep every trial's model and graphs under trials/; by default only the front's are kept.")
    pick_rule: PickRule = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not self.space:
            self.space = {name: build_config(SearchParameter, values, f"space.{name}")
                          for name, values in DEFAULT_SPACE.items()}
        check_space(self.space, self.teacher is not None)
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"trials: {self.trials} must be at least 1")
        for name in ("timeout_s", "budget_s", "max_latency_ms", "max_size_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}: {value} must be greater than zero")
        if self.trials is None and self.timeout_s is None and self.budget_s is None:
            raise ConfigError("trials: no budget; give trials, timeout_s or budget_s, or the search never ends")
        if self.mode == "single" and self.max_latency_ms is None and self.max_size_mb is None:
            raise ConfigError("mode: single needs a constraint: max_latency_ms or max_size_mb (or use mode multi)")
        if self.mode == "multi" and (self.max_latency_ms is not None or self.max_size_mb is not None):
            raise ConfigError("max_latency_ms: constraints belong to mode single; in multi mode use pick "
                              "`most-accurate-under 2ms` to choose from the front")
        if self.transfer_text is not None and self.teacher is None:
            raise ConfigError("transfer_text: the teacher labels transfer text, but no teacher is given; pass a "
                              "teacher or leave transfer_text out")
        if not self.study.strip():
            raise ConfigError("study: a study name is required")
        for name in ("latency_texts", "threads", "heartbeat_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.prune_after_epochs < 0 or self.prune_margin < 0:
            raise ConfigError("prune_after_epochs and prune_margin must not be negative")
        self.pick_rule = parse_pick(self.pick)
        # Every value a trial can draw must be one the training config accepts: checked now, not at trial 7.
        from edgetune.tune.trial_config import trial_training_config

        for name, parameter in self.space.items():
            for value in parameter.extremes():
                try:
                    trial_training_config(self, {name: value})
                except ConfigError as error:
                    raise ConfigError(f"space.{name}: {value!r} is refused by training: {error}") from None
