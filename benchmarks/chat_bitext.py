"""Benchmark: does fine-tuning SmolLM2 on Bitext support conversations help, and what does int4 cost?

Runs `edgetune run recipes/support_chat.yaml` from an empty run directory (LoRA SFT -> fp32 export
with KV cache -> int4 -> bundle -> evaluation of base, fine-tuned fp32 and the bundled int4 variant on
the same held-out test prompts), times it end to end (target: <= 60 minutes on a 2-core CPU) and
checks issue 16's targets against the run's report:

- the fine-tuned int4 model beats the base model by >= 20 points of intent fidelity and >= 10 points
  of ROUGE-L;
- it loses <= 2 points of either against its own fp32 model;
- the bundle is <= 120 MB.

    python benchmarks/chat_bitext.py [--set stages.finetune.max_steps=120 ...]
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
TARGETS = {"fidelity_gain_pts": 20.0, "rouge_l_gain_pts": 10.0, "max_loss_vs_fp32_pts": 2.0, "max_bundle_mb": 120.0,
           "max_minutes": 60.0}


def check_targets(report: dict, wall_s: float) -> dict:
    """Each target's measured value and whether it is met; points are percentage points (ROUGE-L x 100)."""
    models = report["evaluation"]["models"]
    base, fp32 = models["base"], models["finetuned-fp32"]
    shipped_name = next(name for name in models if name not in ("base", "finetuned-fp32"))
    shipped = models[shipped_name]

    def points(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(100 * (a - b), 2)

    measured = {
        "shipped_variant": shipped_name,
        "fidelity_gain_pts": points(shipped["intent_fidelity"], base["intent_fidelity"]),
        "rouge_l_gain_pts": points(shipped["rouge_l"], base["rouge_l"]),
        "fidelity_loss_vs_fp32_pts": points(fp32["intent_fidelity"], shipped["intent_fidelity"]),
        "rouge_l_loss_vs_fp32_pts": points(fp32["rouge_l"], shipped["rouge_l"]),
        "bundle_mb": report.get("bundle_mb"),
        "wall_minutes": round(wall_s / 60, 1),
    }
    met = {
        "fidelity_gain": (measured["fidelity_gain_pts"] or -1e9) >= TARGETS["fidelity_gain_pts"],
        "rouge_l_gain": (measured["rouge_l_gain_pts"] or -1e9) >= TARGETS["rouge_l_gain_pts"],
        "fidelity_loss_vs_fp32": (measured["fidelity_loss_vs_fp32_pts"] or 0) <= TARGETS["max_loss_vs_fp32_pts"],
        "rouge_l_loss_vs_fp32": (measured["rouge_l_loss_vs_fp32_pts"] or 0) <= TARGETS["max_loss_vs_fp32_pts"],
        "bundle_size": measured["bundle_mb"] is not None and measured["bundle_mb"] <= TARGETS["max_bundle_mb"],
        "wall_time": wall_s <= TARGETS["max_minutes"] * 60,
    }
    return {"measured": measured, "met": met, "all_met": all(met.values())}


@click.command()
@click.option("--recipe", default="recipes/support_chat.yaml", show_default=True)
@click.option("--run-dir", default="runs/support_chat-bench", show_default=True,
              help="Emptied first, so every stage runs (nothing comes from the cache).")
@click.option("--name", default="chat_bitext", show_default=True, help="Result file name under benchmarks/results.")
@click.option("--set", "overrides", multiple=True, help="Recipe overrides passed to `edgetune run --set`.")
def main(recipe: str, run_dir: str, name: str, overrides: tuple[str, ...]) -> None:
    run_path = REPO / run_dir
    shutil.rmtree(run_path, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "edgetune"), "run", recipe, "--run-dir", str(run_path)]
    for override in overrides:
        command += ["--set", override]
    cpu_before = cpu_times()
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    wall_s = time.perf_counter() - started
    run = json.loads((run_path / "run.json").read_text())
    report = json.loads((run_path / "report.json").read_text())
    result = {
        "benchmark": name,
        "recipe": recipe,
        "overrides": list(overrides),
        "wall_time_s": round(wall_s, 1),
        "stage_seconds": {stage["name"]: stage["seconds"] for stage in run["stages"]},
        "targets": TARGETS,
        **check_targets(report, wall_s),
        "evaluation": report["evaluation"],
        "quantization": report.get("quantization"),
        "report_md": (run_path / "report.md").read_text(),
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
    } | run_context()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: result[key] for key in ("wall_time_s", "stage_seconds", "measured", "met", "all_met")},
                     indent=2))


if __name__ == "__main__":
    main()
