"""Benchmark: the main job, `edgetune run recipes/quickstart.yaml`, from an empty run directory, timed
end to end (target: <= 10 minutes on a 2-core CPU). Records the stage times, the report table and
the machine, so the README quotes a real run.

    python benchmarks/quickstart_run.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_times, run_context, steal_fraction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET_MINUTES = 10


@click.command()
@click.option("--recipe", default="recipes/quickstart.yaml", show_default=True)
@click.option("--run-dir", default="runs/quickstart-bench", show_default=True,
              help="Emptied first, so every stage runs (nothing comes from the cache).")
@click.option("--name", default="quickstart_run", show_default=True)
def main(recipe: str, run_dir: str, name: str) -> None:
    run_path = REPO / run_dir
    shutil.rmtree(run_path, ignore_errors=True)
    cpu_before = cpu_times()
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "edgetune"), "run", recipe, "--run-dir", str(run_path)],
                   cwd=REPO, check=True)
    wall_s = time.perf_counter() - started
    run = json.loads((run_path / "run.json").read_text())
    report = (run_path / "report.md").read_text()
    result = {
        "benchmark": name,
        "recipe": recipe,
        "wall_time_s": round(wall_s, 1),
        "stage_seconds": {stage["name"]: stage["seconds"] for stage in run["stages"]},
        "stage_status": {stage["name"]: stage["status"] for stage in run["stages"]},
        "report_md": report,
        "target_minutes": TARGET_MINUTES,
        "meets_target": wall_s <= TARGET_MINUTES * 60,
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
    } | run_context()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_time_s", "stage_seconds", "meets_target", "cpu_steal_fraction")}))


if __name__ == "__main__":
    main()
