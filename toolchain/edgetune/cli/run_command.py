"""`edgetune run` and `edgetune validate`: the Click layer over `edgetune.recipes`."""

from __future__ import annotations

import click

_SET_HELP = "Override a recipe key, e.g. --set stages.finetune.epochs=3 (the value is read as YAML). Repeatable."


@click.command("validate")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
def validate_command(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE without running it: every key and type, the data files (or hub id) and the models.

    Problems are reported as one line naming the file, line and key; exit status 2.
    """
    from edgetune.recipes.check import check_recipe
    from edgetune.recipes.load import load_recipe

    loaded = load_recipe(recipe, overrides)
    checked = check_recipe(loaded)
    plan = " -> ".join(f"{stage.name}" + (f" ({stage.kind})" if stage.kind != stage.name else "")
                       for stage in loaded.stages.values())
    click.echo(f"{recipe}: valid; stages: {plan}")
    for note in checked.notes:
        click.echo(f"  {note}")


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory. Default: the recipe's run_dir, else runs/<recipe name>.")
@click.option("--stop-after", metavar="STAGE", default=None,
              help="Stop after this stage; running again continues with the next one.")
def run_command(recipe: str, overrides: tuple[str, ...], run_dir: str | None, stop_after: str | None) -> None:
    """Run RECIPE's stages in order, skipping those already finished in the run directory.

    Each stage's output is addressed by its inputs, config and code version, so a re-run does no
    repeated work and a killed run resumes at the stage it was in. Ends with report.md,
    report.html and pareto.png in the run directory.
    """
    from edgetune.recipes.load import load_recipe
    from edgetune.recipes.runner import run_recipe

    result = run_recipe(load_recipe(recipe, overrides), run_dir, stop_after=stop_after)
    if result.complete:
        click.echo(f"run complete: {result.run_dir}")
    else:
        click.echo(f"stopped after {stop_after}: {result.run_dir}")
