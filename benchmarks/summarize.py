"""Print the Markdown tables the README quotes, straight from benchmarks/results/*.json.

    python benchmarks/summarize.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def finetune_table() -> str:
    lines = ["| model | method | recipe | test accuracy | test macro-F1 | wall time | CPU steal "
             "| target (≥92.5%, ≤30 min) |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("finetune_banking77_*.json")):
        run = json.loads(path.read_text())
        config = run["config"]
        recipe = (f"{config['epochs']:g} ep, lr {config['learning_rate']:g}, ls {config.get('label_smoothing', 0):g}"
                  + (", frozen emb." if config.get("freeze_embeddings") else ""))
        steal = run.get("cpu_steal_fraction")
        lines.append(
            f"| {run['model'].split('/')[-1]} | {run['method']} | {recipe} | {run['test_accuracy']:.2%} | "
            f"{run['test_macro_f1']:.4f} | {run['wall_time_s'] / 60:.1f} min | "
            f"{'n/a' if steal is None else f'{steal:.0%}'} | {_verdict(run.get('meets_target'))} |")
    return "\n".join(lines)


def _verdict(meets_target: bool | None) -> str:
    return "n/a" if meets_target is None else ("met" if meets_target else "missed")


def export_table() -> str:
    path = RESULTS / "export_quantize_banking77.json"
    if not path.is_file():
        return ""
    run = json.loads(path.read_text())
    lines = ["| model (Banking77 test, 3,080 texts) | accuracy | macro-F1 | worst class ΔF1 (pt) | MB | p50 ms "
             "| p90 ms |", "|---|---|---|---|---|---|---|"]
    for name, row in run["rows"].items():
        lines.append(f"| {name} | {row['accuracy']:.2%} | {row['macro_f1']:.4f} | "
                     f"{row['worst_class_f1_change_points']:+.2f} | {row['size_mb']:.1f} | {row['p50_ms']:.3f} | "
                     f"{row['p90_ms']:.3f} |")
    met = [name for name, ok in run["meets_targets"].items() if ok]
    missed = [name for name, ok in run["meets_targets"].items() if not ok]
    lines.append("")
    speedup = run["p50_speedup_vs_optimum_int8"]
    tuned = run.get("p50_speedup_vs_optimum_int8_with_edgetune_session_tuning")
    lines.append(f"p50 speed-up of the edgetune bundle over Optimum by hand: **{speedup}x**"
                 + (f" ({tuned}x over Optimum's graph given edgetune's session tuning too)" if tuned else "") + "; "
                 f"accuracy change against fp32: {-run['accuracy_drop_vs_fp32_points']:+.2f} points; "
                 f"targets met: {', '.join(met) or 'none'}" + (f"; missed: {', '.join(missed)}." if missed else "."))
    return "\n".join(lines)


def tune_table(name: str = "tune_banking77_mpnet_v4") -> str:
    """The front's int8 models, the default recipe's and the peers', with speed as a ratio to the faster peer."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return ""
    run = json.loads(path.read_text())
    params = {f"tune trial {trial['number']}": trial["params"] for trial in run["trials"]}
    params["default recipe (trial 0)"] = run["trials"][0]["params"]
    peers = [row for key, row in run["rows"].items() if key.startswith(("optimum", "olive"))]
    fastest_peer = min(row["p50_ms"] for row in peers)
    lines = ["| model | layers | teacher alpha | augmented | test accuracy | MB | p50 ms | speed vs faster peer |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row in sorted(run["rows"].items(), key=lambda item: item[1]["p50_ms"]):
        drawn = params.get(key, {})
        lines.append(f"| {key} | {drawn.get('num_layers', 6)} | {_cell(drawn.get('alpha'), '.2f')} | "
                     f"{_cell(drawn.get('augment_copies'))} | {row['accuracy']:.2%} | {row['size_mb']:.1f} | "
                     f"{row['p50_ms']:.3f} | {fastest_peer / row['p50_ms']:.2f}x |")
    budget = run["budget"]
    lines.append("")
    lines.append(f"{len(run['trials'])} trials, {budget['trial_seconds_total'] / 3600:.2f} h of trials, "
                 + (f"{budget['epochs_per_trial']:g} epochs each" if "epochs_per_trial" in budget  # the first search
                    else f"at most {budget['max_epochs_per_trial']:g} epochs each") + "; targets met: "
                 + ", ".join(f"{target} {_verdict(met)}" for target, met in run["meets_targets"].items()))
    return "\n".join(lines)


def _cell(value, spec: str = "") -> str:
    return "" if value is None else format(value, spec)


if __name__ == "__main__":
    print(finetune_table())
    print()
    print(export_table())
    print()
    print(tune_table())
