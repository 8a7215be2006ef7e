"""`edgetune tune`: the Click layer over `edgetune.tune.search.tune`."""

from __future__ import annotations

from pathlib import Path

import click

from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.data_options import DATA_OPTIONS
from edgetune.errors import ConfigError
from edgetune.tune.config import TuneConfig

# The trials' training settings are `--epochs`, `--lr`, `--model` as in finetune (also `--base-epochs`, after
# their recipe keys); the search space is a mapping, so it comes from a file (--space).
TUNE_OPTIONS = ConfigOptions(TuneConfig, unprefixed=("base",), exclude=("space",))


def read_space_file(path: str) -> dict:
    """The `space:` mapping of a YAML/JSON file: the mapping itself, or a document with a `space` key."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if isinstance(document, dict) and isinstance(document.get("space"), dict):
        document = document["space"]
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{path}: expected a mapping of setting name -> {{type, low, high, log, choices}}, "
                          "e.g. learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}")
    return document


@click.command("tune")
@DATA_OPTIONS
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Run directory: the study (study.db unless --storage), trials/, trials.json, front.png, "
                   "front.html, and the chosen trial's model/, int8/ and bundle/. Run the same command again to "
                   "resume.")
@click.option("--space", "space_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML/JSON file of the search space: setting -> {type: int|float|categorical, low, high, log, "
                   "step, choices}. Default: learning_rate (log), warmup_ratio and label_smoothing.")
@click.option("--worker-only", is_flag=True,
              help="Only run trials; leave the front, pick and bundle to a run without this flag (extra workers "
                   "of a shared study).")
@TUNE_OPTIONS
def tune_command(output: str, space_file: str | None, worker_only: bool, **options) -> None:
    """Search training settings for validation accuracy against measured on-device latency.

    Each trial trains (fine-tunes, or distils with --teacher) with drawn settings, exports, quantises
    to int8 and times the bundle batch-1 with the runtime on this CPU; the test split is never read.
    --mode multi (default) gives a Pareto front, NSGA-II; --mode single maximises accuracy (TPE) under
    --max-latency-ms or --max-size-mb. The study lives in Optuna storage (study.db in the run
    directory, or --storage URL): a killed tune resumes, and processes given one --storage and --study
    share the trials (PostgreSQL across machines). Prints one line per finished trial; at the end
    writes front.png, front.html and trials.json, picks a trial by --pick and bundles it.
    """
    from edgetune.tune.search import tune
    from edgetune.tune.storage import without_password

    data_config = DATA_OPTIONS.build(options)
    config = TUNE_OPTIONS.build(options, {"space": read_space_file(space_file)} if space_file else None)
    result = tune(data_config, config, output, build_result=not worker_only)
    finished = sum(row["state"] in ("complete", "pruned") for row in result.trials)
    storage = without_password(result.storage)
    click.echo(f"study {result.study}: {len(result.trials)} trials ({finished} finished) in {storage}")
    if result.chosen is not None:
        chosen = result.chosen
        click.echo(f"chosen: trial {chosen['number']}: validation {config.objective} {chosen[config.objective]:.2%}, "
                   f"p50 {chosen['p50_ms']:.3f} ms, {chosen['size_mb']:.1f} MB")
        for name in ("html", "plot", "bundle"):
            click.echo(f"{name}: {result.files[name]}")
