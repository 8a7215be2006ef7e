"""What a finished search leaves in its run directory: every trial, the front, the chosen trial, its bundle.

    trials.json     every trial: number, state, parameters, metrics, seconds, on_front, repeat_of (the earlier
                    trial whose measurements a trial drawing the same settings reused); the pick and its reason
    front.png       the metric against int8 p50 latency, marker area by size, the Pareto front ringed
    front.html      the plot and the table of every trial in one self-contained page
    model/          the chosen trial's trained model (kept from its trial, or retrained from its settings
                    when another machine ran it)
    int8/           its int8 graph (an `edgetune quantize` output)
    bundle/         the bundle built from it by the bundle stage
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.data.config import DataConfig
from edgetune.errors import EdgetuneError
from edgetune.report.pareto import pareto_front
from edgetune.tune.config import PickRule, TuneConfig
from edgetune.tune.storage import without_password

log = logging.getLogger(__name__)


def trial_rows(study, config: TuneConfig) -> list[dict]:
    """Every trial of the study as a plain row; rows with an outcome get `on_front`."""
    from edgetune.tune.search import EPOCH_ATTR, OUTCOME_ATTR, REPEAT_ATTR, _duration_s

    rows = []
    for trial in study.get_trials(deepcopy=False):
        outcome = trial.user_attrs.get(OUTCOME_ATTR) or {}
        rows.append({"number": trial.number, "state": trial.state.name.lower(), "params": dict(trial.params),
                     "accuracy": outcome.get("accuracy"), "macro_f1": outcome.get("macro_f1"),
                     "p50_ms": outcome.get("p50_ms"), "p90_ms": outcome.get("p90_ms"),
                     "size_mb": outcome.get("size_mb"), "epochs_run": outcome.get("epochs_run"),
                     "epoch_metric": trial.user_attrs.get(EPOCH_ATTR, []),
                     "feasible": all(value <= 0 for value in trial.user_attrs.get("constraints", [0.0])),
                     "directory": outcome.get("directory"), "seconds": round(_duration_s(trial), 1),
                     "repeat_of": trial.user_attrs.get(REPEAT_ATTR), "on_front": False})
    measured = [index for index, row in enumerate(rows) if row["state"] == "complete" and row["p50_ms"] is not None]
    front = pareto_front([(rows[i][config.objective], rows[i]["p50_ms"]) for i in measured])
    for position in front:
        rows[measured[position]]["on_front"] = True
    return rows


def pick_trial(rows: list[dict], rule: PickRule, objective: str) -> tuple[dict, str]:
    """The trial the rule chooses among complete, feasible ones, and the reason in words."""
    candidates = [row for row in rows if row["state"] == "complete" and row["p50_ms"] is not None and row["feasible"]]
    if not candidates:
        raise EdgetuneError("no trial finished with a measured model (all pruned, failed or infeasible); raise "
                            "--trials or widen the space, and run the same command again to continue the study")
    best = max(row[objective] for row in candidates)
    if rule.kind == "most-accurate":
        chosen = max(candidates, key=lambda row: (row[objective], -row["p50_ms"]))
        return chosen, f"the highest validation {objective}"
    if rule.kind == "fastest-within":
        near = [row for row in candidates if (best - row[objective]) * 100 <= rule.value + 1e-9]
        chosen = min(near, key=lambda row: (row["p50_ms"], -row[objective]))
        return chosen, (f"the fastest within {rule.value:g} points of the best validation {objective} "
                        f"({best:.2%})")
    key = "p50_ms" if rule.unit == "ms" else "size_mb"
    under = [row for row in candidates if row[key] <= rule.value]
    if not under:
        fastest = min(row[key] for row in candidates)
        raise EdgetuneError(f"pick most-accurate-under {rule.value:g}{rule.unit}: no trial is that "
                            f"{'fast' if key == 'p50_ms' else 'small'} (the best is {fastest:g} {rule.unit}); "
                            "raise the limit or search smaller models (num_layers, max_length)")
    chosen = max(under, key=lambda row: (row[objective], -row[key]))
    measure = "p50 latency" if key == "p50_ms" else "size"
    return chosen, f"the most accurate with {measure} under {rule.value:g} {rule.unit}"


def write_result(study, data_config: DataConfig, config: TuneConfig, run_dir: Path, url: str):
    """Write trials.json, front.png and front.html, keep (or retrain) the chosen model and bundle it."""
    from edgetune.tune.report import write_front_html, write_front_plot
    from edgetune.tune.search import TuneResult

    rows = trial_rows(study, config)
    chosen, reason = pick_trial(rows, config.pick_rule, config.objective)
    files = {"plot": write_front_plot(rows, run_dir / "front.png", config, chosen),
             "html": None, "trials": run_dir / "trials.json"}
    files["html"] = write_front_html(rows, run_dir / "front.html", config, chosen, reason, files["plot"])
    model_dir, int8_dir = _chosen_artifacts(chosen, data_config, config, run_dir)
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig

    files["model"], files["int8"] = model_dir, int8_dir
    files["bundle"] = build_bundle(int8_dir, run_dir / "bundle", BundleConfig(), force=True).directory
    write_json_atomic(files["trials"], {"study": config.study, "storage": without_password(url), "mode": config.mode,
                                        "objective": config.objective, "pick": config.pick, "reason": reason,
                                        "chosen": chosen["number"], "trials": rows})
    _drop_off_front_trials(rows, chosen, config)
    log.info("chosen: trial %d, %s: validation %s %.2f%%, p50 %.3f ms, %.1f MB; bundle %s", chosen["number"], reason,
             config.objective, 100 * chosen[config.objective], chosen["p50_ms"], chosen["size_mb"], files["bundle"])
    return TuneResult(run_dir, url, config.study, rows, chosen, files)


def _chosen_artifacts(chosen: dict, data_config: DataConfig, config: TuneConfig, run_dir: Path) -> tuple[Path, Path]:
    """The chosen trial's model and int8 graph, copied to model/ and int8/ (retrained where they are missing)."""
    from edgetune.tune.trial import INT8_DIR, MODEL_DIR, run_trial

    source = Path(chosen["directory"]) if chosen["directory"] else None
    if source is None or not (source / MODEL_DIR).is_dir() or not (source / INT8_DIR).is_dir():
        # Another machine ran it (each worker keeps its own trials): train the same settings again here.
        log.info("trial %d ran elsewhere: retraining its settings here", chosen["number"])
        source = run_dir / "retrained"
        run_trial(data_config, config, chosen["params"], source)
    targets = []
    for name in (MODEL_DIR, INT8_DIR):
        with atomic_directory(run_dir / name, overwrite=True) as staging:
            shutil.copytree(source / name, staging, dirs_exist_ok=True)
        targets.append(run_dir / name)
    return targets[0], targets[1]


def _drop_off_front_trials(rows: list[dict], chosen: dict, config: TuneConfig) -> None:
    """Trials off the front hold models nobody will pick: removed unless keep_trials."""
    if config.keep_trials:
        return
    for row in rows:
        if row["directory"] and not row["on_front"] and row["number"] != chosen["number"]:
            shutil.rmtree(row["directory"], ignore_errors=True)
