"""The test-split picture of a `tune_banking77.py` result: the front's int8 models, the default recipe's and
the peers' (Optimum by hand, Olive) as test accuracy against batch-1 p50, all timed in the same shuffled turns.

Drawn from the result JSON alone, so it can be redrawn from any committed result:

    python benchmarks/plot_tune.py benchmarks/results/tune_banking77_mpnet.json    # writes ..._mpnet.png
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def plot_rows(record: dict) -> list[dict]:
    """The result's timed graphs as plotter rows: tune trials and the default coloured, peers grey squares."""
    rows = []
    for name, row in record["rows"].items():
        peer = name.startswith(("optimum", "olive"))
        group = "peers on the default model" if peer else \
            ("default recipe" if name.startswith("default") else "edgetune tune (front trials)")
        rows.append({"name": name.replace(" (avx512_vnni int8)", "").replace(" (dynamic int8)", ""),
                     "accuracy": row["accuracy"], "p50_ms": row["p50_ms"], "size_mb": row["size_mb"],
                     "variant": "int8", "device": None if peer else group, "baseline": peer,
                     "runs_on": group if peer else None})
    return rows


def plot_result(result_path: Path) -> Path:
    from edgetune.report.plot import write_pareto_plot

    record = json.loads(result_path.read_text())
    path = result_path.with_suffix(".png")
    seconds = record["budget"].get("trial_seconds_total") or record["budget"]["search_wall_s"]
    write_pareto_plot(plot_rows(record), path, size_by_mb=True,
                      title=f"{record['benchmark']}: Banking77 test, {len(record['trials'])} trials, "
                            f"{seconds / 3600:.1f} h of trials",
                      latency_label="batch-1 p50 latency (ms, 1 thread, shuffled turns), lower is better",
                      accuracy_label="test accuracy (%), higher is better")
    return path


@click.command()
@click.argument("result", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def main(result: Path) -> None:
    """Draw RESULT (a tune_banking77 JSON) as a PNG beside it."""
    print(plot_result(result))


if __name__ == "__main__":
    main()
