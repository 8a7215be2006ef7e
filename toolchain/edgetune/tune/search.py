"""`tune`: search training settings for validation accuracy against measured on-device int8 latency.

The study lives in Optuna's storage (a SQLite file in the run directory by default), so a killed
search resumes where it stopped and several `edgetune tune` processes, on one machine or many,
given the same storage and study share its trials. Multi mode samples with NSGA-II over two
objectives (metric up, p50 down); single mode samples with TPE under a latency or size constraint.

Pruning: Optuna prunes single-objective studies only (`Trial.should_prune` is not defined for more
than one objective). Single mode uses its median pruner on the per-epoch validation metric. Multi
mode stops a trial whose metric after an epoch is more than `prune_margin` points below the best any
finished trial had at that epoch: a wide margin, since a weaker but faster model can still be on
the front, so only hopeless trials (a learning rate that diverged, a model that learns nothing) stop.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import EdgetuneError
from edgetune.tune.config import TuneConfig
from edgetune.tune.storage import mark_owner, open_storage, recover_dead_trials, requeue, storage_url
from edgetune.tune.trial import TrialOutcome, run_trial, search_data

log = logging.getLogger(__name__)

OUTCOME_ATTR = "outcome"
EPOCH_ATTR = "epoch_metric"
REPEAT_ATTR = "repeat_of"
TRIALS_DIR = "trials"


@dataclass
class TuneResult:
    """Where the search's results went, and which trial was chosen."""

    run_dir: Path
    storage: str
    study: str
    trials: list[dict]
    """Every trial: number, state, params, metrics, seconds, on_front."""
    chosen: dict | None
    files: dict[str, Path] = field(default_factory=dict)


def tune(data_config: DataConfig, config: TuneConfig, run_dir: str | Path, *, build_result: bool = True) -> TuneResult:
    """Run (or resume, or join) the study, then write the front, the trial table, the chosen model and its bundle.

    `build_result=False` only searches (a worker that leaves the result to another).
    """
    import optuna

    run_dir = Path(run_dir)
    data_config = search_data(data_config)
    load_labelled_data(data_config)  # the data is checked before any storage, model or run directory is touched
    if config.transfer_text:
        from edgetune.distill.transfer_text import read_transfer_text

        read_transfer_text(config.transfer_text)  # so is the transfer text, not at the first distilled trial
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(config.storage, run_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _create_or_join(url, config)
    _check_same_search(study, config)
    recover_dead_trials(study)
    _search(study, data_config, config, run_dir)
    if not build_result:
        from edgetune.tune.result import trial_rows

        return TuneResult(run_dir, url, config.study, trial_rows(study, config), None)
    from edgetune.tune.result import write_result

    return write_result(study, data_config, config, run_dir, url)


def _create_or_join(url: str, config: TuneConfig):
    """The study, created by the first worker and joined by the others. Workers starting together may race
    to create the storage's tables or the study itself: the loser tries again and then joins."""
    import optuna

    directions = ["maximize", "minimize"] if config.mode == "multi" else ["maximize"]
    for attempt in range(5):
        try:
            return optuna.create_study(storage=open_storage(url, config.heartbeat_s), study_name=config.study,
                                       load_if_exists=True, sampler=_sampler(config), pruner=_pruner(config),
                                       directions=directions)
        except Exception as error:
            if attempt == 4 or not type(error).__module__.startswith(("sqlalchemy", "optuna")) \
                    or isinstance(error, EdgetuneError):
                raise
            time.sleep(0.5 + attempt)


def _sampler(config: TuneConfig):
    import optuna

    if config.mode == "multi":
        # A population a small budget sees several generations of (Optuna's default 50 would be random search).
        population = max(4, min(50, (config.trials or 40) // 4))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=config.sampler_seed)
    return optuna.samplers.TPESampler(seed=config.sampler_seed, constraints_func=_constraints,
                                      n_startup_trials=min(10, max(2, (config.trials or 20) // 3)))


def _constraints(trial) -> list[float]:
    """Optuna's convention: a value <= 0 is satisfied. Stored per trial, since the limits are the config's."""
    return list(trial.user_attrs.get("constraints", [0.0]))


def _pruner(config: TuneConfig):
    import optuna

    if config.mode == "single" and config.pruning:
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=config.prune_after_epochs)
    return optuna.pruners.NopPruner()


def _check_same_search(study, config: TuneConfig) -> None:
    """A study resumed or joined with another objective or space would mix incomparable trials."""
    recorded = study.user_attrs.get("search")
    search = {"mode": config.mode, "objective": config.objective,
              "space": {name: asdict(parameter) for name, parameter in config.space.items()},
              "teacher": config.teacher, "model": config.base.model}
    if config.transfer_text:  # only when given, so studies recorded before the setting existed still resume
        search["transfer_text"] = config.transfer_text
    search = _json_round_trip(search)
    if recorded is None:
        study.set_user_attr("search", search)
    elif recorded != search:
        changed = next(key for key in {**recorded, **search} if recorded.get(key) != search.get(key))
        raise EdgetuneError(f"study {config.study!r}: its {changed} differs from this run's; use the same settings "
                            "to resume or join it, or pass another --study (or --storage) to start a new one")


def _json_round_trip(value):
    import json

    return json.loads(json.dumps(value))


def _search(study, data_config: DataConfig, config: TuneConfig, run_dir: Path) -> None:
    """Run trials until the study's trial count or wall budget is reached, or this process's timeout."""
    from tqdm.auto import tqdm

    started = time.monotonic()
    # Over the trial count when there is one, else over the study's wall budget; with only a timeout, a counter.
    total = config.trials if config.trials is not None else config.budget_s
    done = _progress(study, config)
    bar = tqdm(total=total, initial=done if total is None else min(total, done), desc=f"tune {config.study}",
               unit="s" if config.trials is None and config.budget_s is not None else "trial", dynamic_ncols=True)
    current: dict[str, int] = {}

    def objective(trial):
        current["number"] = trial.number
        mark_owner(trial)
        return _objective(trial, study, data_config, config, run_dir)

    def report(study_, frozen) -> None:
        bar.write(format_trial_line(frozen, config))
        done = _progress(study, config)
        bar.update(max(0, (done if total is None else min(total, done)) - bar.n))

    try:
        while _budget_left(study, config) and (config.timeout_s is None
                                                or time.monotonic() - started < config.timeout_s):
            try:
                study.optimize(objective, n_trials=1, catch=(EdgetuneError,), callbacks=[report],
                               gc_after_trial=True)
            except ValueError as error:
                # Another worker found this trial's heartbeat stale (a machine stalled for minutes) and failed
                # and re-queued it; its settings run again, so this worker goes on with the next trial.
                if not str(error).startswith("Cannot tell a FAIL trial"):
                    raise
                log.warning("trial %s was failed by another worker (stale heartbeat); continuing",
                            current.get("number"))
    except KeyboardInterrupt:
        # Optuna marked the interrupted trial failed; its settings were not wrong, so they run again later.
        if "number" in current:
            requeue(study, current["number"])
        raise
    finally:
        bar.close()
    if config.timeout_s is not None and time.monotonic() - started >= config.timeout_s:
        log.info("timeout: %.0f s passed; the same command continues the study", config.timeout_s)


def _objective(trial, study, data_config: DataConfig, config: TuneConfig, run_dir: Path):
    import optuna

    params = {name: parameter.suggest(trial, name) for name, parameter in config.space.items()}
    if (earlier := _finished_with(study, params)) is not None:
        return _repeat(trial, earlier, config)
    trial_dir = run_dir / TRIALS_DIR / f"{trial.number:04d}"
    epochs: list[float] = []

    def on_epoch(epoch: int, value: float) -> None:
        epochs.append(value)
        trial.set_user_attr(EPOCH_ATTR, epochs)
        may_prune = config.pruning and epoch > config.prune_after_epochs
        if config.mode == "single":
            trial.report(value, epoch)
            if may_prune and trial.should_prune():
                raise optuna.TrialPruned(f"validation {config.objective} {value:.4f} at epoch {epoch}: below the "
                                         "median of earlier trials")
        elif may_prune and (reason := hopeless(study, epoch, value, config)):
            raise optuna.TrialPruned(reason)

    started = time.perf_counter()
    try:
        outcome = run_trial(data_config, config, params, trial_dir, on_epoch)
    except (optuna.TrialPruned, EdgetuneError):
        _remove_trial_dir(trial_dir, config)
        raise
    trial.set_user_attr(OUTCOME_ATTR, asdict(outcome))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
    trial.set_user_attr("constraints", _constraint_values(outcome, config))
    value = outcome.objective(config.objective)
    return (value, outcome.p50_ms) if config.mode == "multi" else value


def _finished_with(study, params: dict):
    """A complete trial that ran exactly these settings, or None. NSGA-II's crossover can hand back a parent's
    settings unchanged (trial 10 of the first Banking77 search repeated trial 6: 12 minutes for a known point)."""
    from optuna.trial import TrialState

    for earlier in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if earlier.params == params and OUTCOME_ATTR in earlier.user_attrs:
            return earlier
    return None


def _repeat(trial, earlier, config: TuneConfig):
    """Finish `trial` with the measurements of `earlier`, which ran the same settings (Optuna's advice for
    repeated parameters: return the known value rather than train again)."""
    for name in (OUTCOME_ATTR, EPOCH_ATTR, "constraints"):
        if name in earlier.user_attrs:
            trial.set_user_attr(name, earlier.user_attrs[name])
    trial.set_user_attr(REPEAT_ATTR, earlier.number)
    log.info("trial %d draws the settings of trial %d: its measurements are reused", trial.number, earlier.number)
    return tuple(earlier.values) if config.mode == "multi" else earlier.value


def _constraint_values(outcome: TrialOutcome, config: TuneConfig) -> list[float]:
    values = []
    if config.max_latency_ms is not None:
        values.append(outcome.p50_ms - config.max_latency_ms)
    if config.max_size_mb is not None:
        values.append(outcome.size_mb - config.max_size_mb)
    return values or [0.0]


def hopeless(study, epoch: int, value: float, config: TuneConfig) -> str | None:
    """Multi mode's pruning rule: why a trial at `value` after `epoch` should stop, or None to go on."""
    best = _best_at_epoch(study, epoch)
    if best is not None and (best - value) * 100 > config.prune_margin:
        return (f"validation {config.objective} {value:.4f} at epoch {epoch}: more than {config.prune_margin:g} "
                f"points below the best trial's {best:.4f}")
    return None


def _best_at_epoch(study, epoch: int) -> float | None:
    from optuna.trial import TrialState

    values = [trial.user_attrs[EPOCH_ATTR][epoch - 1]
              for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if len(trial.user_attrs.get(EPOCH_ATTR, [])) >= epoch]
    return max(values) if values else None


def _remove_trial_dir(trial_dir: Path, config: TuneConfig) -> None:
    import shutil

    if not config.keep_trials:
        shutil.rmtree(trial_dir, ignore_errors=True)


def counted_trials(study) -> list:
    """Trials that use up the budget: finished ones (complete, pruned) and failures that were not queued again."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {trial.system_attrs.get("failed_trial") for trial in trials}
    return [trial for trial in trials
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (trial.state == TrialState.FAIL and trial.number not in retried)]


def _progress(study, config: TuneConfig) -> float:
    counted = counted_trials(study)
    if config.trials is None and config.budget_s is not None:
        return sum(_duration_s(trial) for trial in counted)
    return len(counted)


def _duration_s(trial) -> float:
    if trial.datetime_start is None:
        return 0.0
    end = trial.datetime_complete
    if end is None:
        import datetime

        end = datetime.datetime.now()
    return (end - trial.datetime_start).total_seconds()


def _budget_left(study, config: TuneConfig) -> bool:
    """Whether another trial may start: the running trials of other workers count as spent, so two
    workers finishing together do not both start the last one (see the README on the small race left)."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    # A trial whose worker died elsewhere is failed (and re-queued) now, not counted as running forever.
    fail_stale_trials(study)
    counted = counted_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if config.trials is not None and len(counted) + len(running) >= config.trials:
        return False
    if config.budget_s is not None and sum(_duration_s(t) for t in [*counted, *running]) >= config.budget_s:
        return False
    return True


def format_trial_line(trial, config: TuneConfig) -> str:
    """One line per finished trial: number, state, metric, latency, size, seconds, settings."""
    outcome = trial.user_attrs.get(OUTCOME_ATTR)
    params = " ".join(f"{name}={_short(value)}" for name, value in trial.params.items())
    seconds = f"{_duration_s(trial):.0f}s"
    if REPEAT_ATTR in trial.user_attrs:
        params += f"  (repeat of trial {trial.user_attrs[REPEAT_ATTR]}: not trained again)"
    if outcome:
        return (f"trial {trial.number:>3} {trial.state.name.lower():<8} {config.objective} "
                f"{outcome[config.objective]:.2%}  "
                f"p50 {outcome['p50_ms']:.3f} ms  {outcome['size_mb']:.1f} MB  {seconds:>6}  {params}  "
                f"(pid {os.getpid()})")
    epochs = trial.user_attrs.get(EPOCH_ATTR, [])
    last = f"last epoch {config.objective} {epochs[-1]:.2%}  " if epochs else ""
    return f"trial {trial.number:>3} {trial.state.name.lower():<8} {last}{seconds:>6}  {params}  (pid {os.getpid()})"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
