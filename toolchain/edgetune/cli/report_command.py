"""`edgetune report`: merge bench results from many devices into one table and a Pareto plot."""

from __future__ import annotations

import click

from edgetune.cli.config_options import ConfigOptions
from edgetune.report.merge import PLOT_FILE, TABLE_FILE, ReportConfig

REPORT_OPTIONS = ConfigOptions(ReportConfig)


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help=f"Directory to write {TABLE_FILE} and {PLOT_FILE} into.")
@REPORT_OPTIONS
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def report_command(results: tuple[str, ...], output: str, force: bool, **options) -> None:
    """Merge RESULTS (JSON files from `edgetune-runtime bench -o`, from any devices) into one report.

    Prints the comparison table and writes it to OUTPUT/report.md, with OUTPUT/pareto.png: accuracy
    against latency, the Pareto front (runs no other run beats on both) marked. Results of chat
    (text-generation) bundles get a table of their own: first token by prompt length, decode speed.
    """
    from edgetune.report.merge import report

    result = report(list(results), output, REPORT_OPTIONS.build(options), force=force)
    click.echo(result.table)
    if result.rows:  # classification runs; chat bundles' results have a table only
        click.echo(f"Pareto front: {', '.join(row.name for row in result.front)}")
    click.echo(f"written to {result.output_dir}/{TABLE_FILE}" + (f" and {PLOT_FILE}" if result.rows else ""))
