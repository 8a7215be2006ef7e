"""Accuracy against latency as a PNG, with the Pareto front drawn and its points ringed: the one plotter
of `edgetune report` (many devices, coloured by device) and of a run's report (marker area by MB)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from edgetune.report.pareto import pareto_front
from edgetune.report.rows import ReportRow, as_row

_BASELINE_COLOUR = "tab:gray"


def write_pareto_plot(rows: Sequence[ReportRow | dict], path: str | Path, *, title: str = "Accuracy against latency",
                      latency: Literal["p50_ms", "p90_ms"] = "p50_ms", latency_label: str | None = None,
                      accuracy_label: str = "accuracy (%), higher is better", size_by_mb: bool = False) -> list[int]:
    """Plot every row with an accuracy and a latency; return the indices (into `rows`) on the Pareto front.

    Points are coloured by device, so results merged from many devices stay apart, and labelled
    with their name; baseline rows are grey squares. With `size_by_mb` a marker's area follows the
    model's size and its label adds variant and MB. The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and boards
    import matplotlib.pyplot as plt

    from edgetune_runtime.atomic_write import atomic_path

    rows = [as_row(row) for row in rows]
    points = [(row.accuracy, getattr(row, latency)) for row in rows]
    front = pareto_front(points)
    plotted = [index for index, (accuracy, value) in enumerate(points) if accuracy is not None and value is not None]
    largest_mb = max((rows[index].size_mb or 0.0 for index in plotted), default=0.0) or 1.0

    def area(index: int) -> float:
        # In proportion to size, with a floor so tiny models stay visible.
        return 60 + 900 * (rows[index].size_mb or 0.0) / largest_mb if size_by_mb else 36

    devices = list(dict.fromkeys(rows[index].device or "" for index in plotted if not rows[index].baseline))
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    for device_number, device in enumerate(devices):
        members = [index for index in plotted if (rows[index].device or "") == device and not rows[index].baseline]
        axes.scatter([points[i][1] for i in members], [points[i][0] * 100 for i in members],
                     s=[area(i) for i in members], color=colours(device_number % 10), alpha=0.7 if size_by_mb else 1,
                     edgecolors="black" if size_by_mb else "none", linewidths=0.6,
                     label=device or ("model (marker area ~ MB)" if size_by_mb else None), zorder=3)
    baselines = [index for index in plotted if rows[index].baseline]
    if baselines:
        axes.scatter([points[i][1] for i in baselines], [points[i][0] * 100 for i in baselines], marker="s",
                     s=[area(i) for i in baselines], color=_BASELINE_COLOUR, alpha=0.7, edgecolors="black",
                     linewidths=0.6, label=f"baseline ({rows[baselines[0]].runs_on or 'reference'})", zorder=3)
    if front:
        axes.step([points[i][1] for i in front], [points[i][0] * 100 for i in front], where="post", color="black",
                  linewidth=1, linestyle="--", zorder=2, label="Pareto front (ringed)")
        axes.scatter([points[i][1] for i in front], [points[i][0] * 100 for i in front],
                     s=[area(i) * 1.8 + 60 for i in front], facecolors="none", edgecolors="black", linewidths=1.2,
                     zorder=4)
    for index in plotted:
        row, on_front = rows[index], index in front
        label = row.name + (f"\n{row.variant or '?'}, {row.size_mb:.1f} MB" if size_by_mb and row.size_mb else "")
        # Front points carry the message; the others are labelled small and grey so they do not crowd it.
        # Offset by the marker's radius (area is in points squared), so a large marker does not cover its label.
        offset = area(index) ** 0.5 / 2 + 3
        axes.annotate(label, (points[index][1], points[index][0] * 100), textcoords="offset points",
                      xytext=(offset, 5 if on_front else -12), fontsize=8 if on_front else 6.5,
                      color="black" if on_front else "dimgray", fontweight="bold" if on_front else "normal")
    values = [points[i][1] for i in plotted]
    axes.margins(x=0.25, y=0.15)  # room for the labels right of the points
    if values and max(values) / max(min(values), 1e-9) > 20:
        axes.set_xscale("log")  # a phone and a server side by side span decades
    else:
        axes.set_xlim(left=0)
    low, high = axes.get_ylim()
    if high - low < 2.0:  # at least two accuracy points tall, so a 0.1-point gap does not look like a cliff
        middle = (low + high) / 2
        axes.set_ylim(middle - 1.0, middle + 1.0)
    axes.set_xlabel(latency_label or f"{latency.removesuffix('_ms')} latency (ms), lower is better")
    axes.set_ylabel(accuracy_label)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        # Below the axes, so it never hides a point.
        legend = axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=7.5, frameon=False)
        for handle in legend.legend_handles:  # one legend marker size, whatever the size of the first model
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([40])
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return front
