"""`run_recipe`: run a recipe's stages in order into a run directory, skipping finished ones.

Layout of a run directory:

    run.log                      everything the stages logged, with times
    run.json                     the recipe as run, each stage's key, status, time and output
    recipe.yaml                  the recipe with --set overrides applied
    stages/<name>-<key12>/       each stage's artifact, written atomically by the stage itself
    stages/<name>-<key12>.json   what went into that key, and how long the stage took
    latest/<name>                a link to the output of <name> in the latest run
    report.md, report.html, pareto.png

A stage's directory appears only when the stage finished (the library renames it into place), so
a run killed mid-stage leaves no output for it, and the next run starts again at that stage
(fine-tuning continues from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgetune.bundle.zip_path import zip_path_for
from edgetune.configuration import config_to_dict
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.exclusive import exclusive_use
from edgetune.interrupts import termination_as_interrupt
from edgetune.recipes.cache_key import key_payload, stage_keys
from edgetune.recipes.check import check_recipe
from edgetune.recipes.schema import Recipe, RecipeStage
from edgetune.recipes.stages import StageCall, stages_for
from edgetune.recipes.tasks import recipe_task
from edgetune_runtime.atomic_write import TEMPORARY_MARK, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

LOG_FILE = "run.log"
RUN_RECORD = "run.json"
LOCK_FILE = ".lock"


@dataclass
class StageRecord:
    """What happened to one stage in this run."""

    name: str
    kind: str
    key: str
    output_dir: Path
    status: str
    """`ran` or `cached`."""
    seconds: float | None
    """Time this stage took when it ran (now or in the run that made it)."""


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRecord]
    complete: bool
    """False when the run stopped early (`stop_after`)."""
    report_files: list[Path] = field(default_factory=list)

    def output_of(self, name: str) -> Path:
        return next(record.output_dir for record in self.stages if record.name == name)


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.run_dir or f"runs/{recipe.name}")


def run_recipe(recipe: Recipe, run_dir: str | Path | None = None, *, stop_after: str | None = None) -> RunResult:
    """Run every stage of `recipe` not already finished in `run_dir`, then write the run's report.

    `stop_after` ends the run after that stage (the report needs the whole run).
    """
    if stop_after is not None and stop_after not in recipe.stages:
        raise ConfigError(f"--stop-after {stop_after}: no such stage; the recipe's stages are "
                          f"{', '.join(recipe.stages)}")
    checked = check_recipe(recipe)  # every file and model is found before anything is computed
    run_dir = Path(run_dir or default_run_dir(recipe)).resolve()
    stages_dir = run_dir / "stages"
    stages_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir), _log_to(run_dir / LOG_FILE), termination_as_interrupt():
        started = time.perf_counter()
        log.info("run of %s in %s; %s", recipe.source or recipe.name, run_dir, "; ".join(checked.notes))
        _remove_unfinished(stages_dir)
        _write_recipe_copy(recipe, run_dir)
        keys = stage_keys(recipe, checked.data)
        records: list[StageRecord] = []
        total = len(recipe.stages)
        for index, stage in enumerate(recipe.stages.values(), start=1):
            output_dir = stages_dir / f"{stage.name}-{keys[stage.name][:12]}"
            if output_dir.is_dir():
                log.info("[%d/%d] %s (%s): cached in %s", index, total, stage.name, stage.kind, output_dir.name)
                records.append(StageRecord(stage.name, stage.kind, keys[stage.name], output_dir, "cached",
                                           _recorded_seconds(output_dir)))
            else:
                log.info("[%d/%d] %s (%s): running into %s", index, total, stage.name, stage.kind, output_dir.name)
                seconds = _run_stage(recipe, stage, output_dir, records, checked.data.config)
                write_json_atomic(_stage_record_path(output_dir), {
                    "name": stage.name, "kind": stage.kind, "key": keys[stage.name],
                    "key_payload": key_payload(stage, keys, checked.data, recipe.task), "seconds": round(seconds, 1),
                    "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                records.append(StageRecord(stage.name, stage.kind, keys[stage.name], output_dir, "ran", seconds))
                log.info("[%d/%d] %s done in %.1f s", index, total, stage.name, seconds)
            _link_latest(run_dir, stage.name, output_dir)
            _write_run_record(run_dir, recipe, records, checked.data.description)
            if stop_after == stage.name and index < total:
                log.info("stopped after %s as asked; run again to continue from the next stage", stage.name)
                return RunResult(run_dir, records, complete=False)
        result = RunResult(run_dir, records, complete=True)
        result.report_files = recipe_task(recipe.task).load("write_report")(recipe, result)
        log.info("%s", format_summary(result, time.perf_counter() - started))
        return result


def _run_stage(recipe: Recipe, stage: RecipeStage, output_dir: Path, done: list[StageRecord], data_config) -> float:
    spec = stages_for(recipe.task)[stage.kind]
    outputs = {record.name: record.output_dir for record in done}
    references = {field_name: outputs[name] for field_name, name in stage.references.items()}
    # A field that named an earlier stage now names that stage's output directory.
    config = dataclasses.replace(stage.config, **{k: str(v) for k, v in references.items()}) if references \
        else stage.config
    call = StageCall(data=data_config, config=config, output_dir=output_dir,
                     input_dir=outputs[stage.input] if stage.input else None, references=references)
    started = time.perf_counter()
    try:
        spec.call(spec, call)
    except EdgetuneError as error:
        raise type(error)(f"stage {stage.name} ({stage.kind}): {error}") from None
    return time.perf_counter() - started


def _stage_record_path(output_dir: Path) -> Path:
    return output_dir.with_name(f"{output_dir.name}.json")


def _recorded_seconds(output_dir: Path) -> float | None:
    path = _stage_record_path(output_dir)
    try:
        return json.loads(path.read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        return None  # killed between the stage's rename and this record: the output itself is complete


def _link_latest(run_dir: Path, name: str, output_dir: Path) -> None:
    """`latest/<stage name>` (and `latest/<stage name>.zip` for a zipped bundle) point at this run's outputs,
    so people and scripts need not know the keys."""
    latest = run_dir / "latest"
    latest.mkdir(exist_ok=True)
    for target, link_name in ((output_dir, name), (zip_path_for(output_dir), f"{name}.zip")):
        if not target.exists():
            continue
        link = latest / link_name
        # A link is not written through a file handle, so not through `atomic_write`. One run holds the run
        # directory at a time (`_exclusive`), so a fixed name is safe, and the next run replaces one a kill left.
        staging = latest / f".{link.name}{TEMPORARY_MARK}link"
        staging.unlink(missing_ok=True)
        staging.symlink_to(Path("..") / "stages" / target.name)
        if link.is_dir() and not link.is_symlink():  # a copy of the run dir that followed the links
            shutil.rmtree(link)
        staging.replace(link)  # atomic: the link always points at a finished output


def _remove_unfinished(stages_dir: Path) -> None:
    """Staging directories left by a killed stage (`.name.tmp-*`) are never resumed: remove them.

    Fine-tuning checkpoints (`.name.work`) are kept: the fine-tune stage resumes from them.
    """
    for leftover in stages_dir.glob(".*.tmp-*"):
        log.info("removing %s, left by an interrupted stage", leftover.name)
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def _write_recipe_copy(recipe: Recipe, run_dir: Path) -> None:
    import yaml

    text = yaml.safe_dump(recipe.raw, sort_keys=False, allow_unicode=True)
    header = f"# {recipe.source or recipe.name}, as run (with --set overrides)\n"
    write_text_atomic(run_dir / "recipe.yaml", header + text)


def _write_run_record(run_dir: Path, recipe: Recipe, records: list[StageRecord], data_description: str) -> None:
    write_json_atomic(run_dir / RUN_RECORD, {
        "recipe": str(recipe.source or recipe.name),
        "name": recipe.name,
        "data": data_description,
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": [{"name": r.name, "kind": r.kind, "key": r.key, "output": str(r.output_dir.relative_to(run_dir)),
                    "status": r.status, "seconds": None if r.seconds is None else round(r.seconds, 1),
                    "config": config_to_dict(recipe.stages[r.name].config)} for r in records],
    })


def format_summary(result: RunResult, wall_seconds: float) -> str:
    """The table printed at the end of a run: each stage, whether it ran, how long, where its output is."""
    lines = [f"{'stage':<22}{'kind':<10}{'status':<8}{'seconds':>9}  output"]
    for record in result.stages:
        seconds = "" if record.seconds is None else f"{record.seconds:.1f}"
        lines.append(f"{record.name:<22}{record.kind:<10}{record.status:<8}{seconds:>9}  "
                     f"{record.output_dir.relative_to(result.run_dir)}")
    ran = sum(record.status == "ran" for record in result.stages)
    lines.append(f"{ran} of {len(result.stages)} stages ran, {len(result.stages) - ran} cached; "
                 f"{wall_seconds:.1f} s in all")
    for path in result.report_files:
        lines.append(f"report: {path}")
    return "summary\n" + "\n".join(lines)


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy edgetune's log records into the run's log file for the duration of the run."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("edgetune")
    previous_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    except KeyboardInterrupt:
        logger.error("run interrupted; the same command resumes it at the stage it was in")
        raise
    except BaseException as error:
        logger.error("run stopped: %s: %s", type(error).__name__, error)
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()


def _exclusive(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One run at a time per run directory: two would race to build the same stage directories."""
    return exclusive_use(run_dir / LOCK_FILE, str(run_dir), "pass another --run-dir")
