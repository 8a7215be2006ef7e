"""Training curves from the trainer's log history: one CSV to analyse, one PNG to look at."""

from __future__ import annotations

import csv
from pathlib import Path

CURVE_COLUMNS = ("step", "epoch", "train_loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_macro_f1")


def curve_rows(log_history: list[dict]) -> list[dict]:
    """One row per logged step, merging the training and evaluation entries of that step."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "step" not in entry or not ({"loss", "eval_loss"} & entry.keys()):
            continue
        row = rows.setdefault(entry["step"], {"step": entry["step"]})
        row["epoch"] = round(entry.get("epoch", 0.0), 4)
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
            row["learning_rate"] = entry.get("learning_rate")
        for key in ("eval_loss", "eval_accuracy", "eval_macro_f1"):
            if key in entry:
                row[key] = entry[key]
    return [rows[step] for step in sorted(rows)]


def write_curves(log_history: list[dict], directory: Path, metric: str) -> list[dict]:
    """Write training_curves.csv and training_curves.png into `directory`; return the rows."""
    rows = curve_rows(log_history)
    with open(directory / "training_curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, directory / "training_curves.png", metric)
    return rows


def _plot(rows: list[dict], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: training servers have no display
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list, list]:
        points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axes.plot(*series("train_loss"), ".-", label="train loss", color="tab:blue", linewidth=1, markersize=3)
    loss_axes.plot(*series("eval_loss"), "o-", label="validation loss", color="tab:orange")
    loss_axes.set(xlabel="optimiser step", ylabel="cross-entropy loss", title="Loss")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    for key, label in (("eval_accuracy", "accuracy"), ("eval_macro_f1", "macro-F1")):
        metric_axes.plot(*series(key), "o-", label=f"validation {label}")
    metric_axes.set(xlabel="optimiser step", ylabel="score", title=f"Validation (model selected on {metric})")
    metric_axes.legend()
    metric_axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
