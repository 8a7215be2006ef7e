"""Accuracy against latency as a PNG, with the Pareto front drawn and its points ringed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from edgetune.report.pareto import pareto_front
from edgetune.report.rows import ReportRow, as_row


def write_pareto_plot(rows: Sequence[ReportRow | dict], path: str | Path, *, title: str = "Accuracy against latency",
                      latency: Literal["p50_ms", "p90_ms"] = "p50_ms", latency_label: str | None = None) -> list[int]:
    """Plot every row with an accuracy and a latency; return the indices (into `rows`) on the Pareto front.

    Points are coloured by device, so results merged from many devices stay apart; each is
    labelled with its name. The PNG is written through a temporary file and a rename.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and boards
    import matplotlib.pyplot as plt

    rows = [as_row(row) for row in rows]
    points = [(row.accuracy, getattr(row, latency)) for row in rows]
    front = pareto_front(points)
    plotted = [index for index, (accuracy, value) in enumerate(points) if accuracy is not None and value is not None]
    devices = list(dict.fromkeys(rows[index].device or "" for index in plotted))
    colours = plt.get_cmap("tab10")

    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    for device_number, device in enumerate(devices):
        members = [index for index in plotted if (rows[index].device or "") == device]
        axes.scatter([points[i][1] for i in members], [points[i][0] * 100 for i in members], s=36,
                     color=colours(device_number % 10), label=device or None, zorder=3)
    if front:
        axes.step([points[i][1] for i in front], [points[i][0] * 100 for i in front], where="post", color="black",
                  linewidth=1, linestyle="--", zorder=2, label="Pareto front")
        axes.scatter([points[i][1] for i in front], [points[i][0] * 100 for i in front], s=140, facecolors="none",
                     edgecolors="black", linewidths=1.2, zorder=4)
    for index in plotted:
        on_front = index in front
        # Front points carry the message; the others are labelled small and grey so they do not crowd it.
        axes.annotate(rows[index].name, (points[index][1], points[index][0] * 100), textcoords="offset points",
                      xytext=(6, 5 if on_front else -10), fontsize=8 if on_front else 6.5,
                      color="black" if on_front else "dimgray", fontweight="bold" if on_front else "normal")
    values = [points[i][1] for i in plotted]
    axes.margins(x=0.2, y=0.15)  # room for the labels right of the points
    if values and max(values) / max(min(values), 1e-9) > 20:
        axes.set_xscale("log")  # a phone and a server side by side span decades
    else:
        axes.set_xlim(left=0)
    axes.set_xlabel(latency_label or f"{latency.removesuffix('_ms')} latency (ms), lower is better")
    axes.set_ylabel("accuracy (%), higher is better")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if any(devices) or front:
        axes.legend(fontsize=7, loc="best")
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)
    return front
