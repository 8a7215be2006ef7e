"""Accuracy per CPU target: each bundle's accuracy on the host beside its accuracy on emulated targets.

int8 kernels differ by instruction set (edgetune_runtime.targets), so a variant chosen on one CPU can
lose accuracy on another; this is the table and bar chart `edgetune report` adds when results from
scripts/emulate.sh are among its inputs. Only accuracy is compared: emulated latency is not the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgetune.report.rows import ReportRow
from edgetune.report.table import markdown_table


@dataclass
class TargetAccuracy:
    """Accuracy by (bundle, column); a column is a target, marked when it ran under emulation."""

    bundles: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    accuracy: dict[tuple[str, str], float] = field(default_factory=dict)
    # The lowest accuracy at another batch size where it is lower (batch size, accuracy): padding changes the
    # activations' range, and with it dynamic int8's scales, so one target can differ by batch size alone.
    lowest_elsewhere: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    emulated: bool = False


def _column(row: ReportRow) -> str:
    return f"{row.target or 'other'} (emulated)" if row.emulated else f"{row.target or 'other'} (host)"


def target_accuracy(rows: Sequence[ReportRow], batch_size: int) -> TargetAccuracy:
    """Each bundle's accuracy per target at `batch_size` (else its first run there); hosts' columns first."""
    table = TargetAccuracy(emulated=any(row.emulated for row in rows))
    for row in sorted(rows, key=lambda row: (row.emulated, row.batch_size != batch_size)):
        if row.accuracy is None or row.bundle is None:
            continue
        key = (row.bundle, _column(row))
        if key not in table.accuracy:
            table.accuracy[key] = row.accuracy
            table.bundles += [row.bundle] if row.bundle not in table.bundles else []
            table.columns += [key[1]] if key[1] not in table.columns else []
        elif row.accuracy < min(table.accuracy[key], table.lowest_elsewhere.get(key, (0, 1.0))[1]):
            table.lowest_elsewhere[key] = (row.batch_size, row.accuracy)
    return table


def _cell(table: TargetAccuracy, key: tuple[str, str]) -> str:
    if key not in table.accuracy:
        return "-"
    cell = f"{table.accuracy[key]:.2%}"
    if key in table.lowest_elsewhere:
        batch_size, accuracy = table.lowest_elsewhere[key]
        cell += f" ({accuracy:.2%} at batch {batch_size})"
    return cell


def targets_markdown(table: TargetAccuracy, plot_file: str) -> list[str]:
    """The report's section on targets; empty when no result ran under emulation."""
    if not table.emulated:
        return []
    cells = [["bundle", *table.columns]] + [
        [bundle, *(_cell(table, (bundle, column)) for column in table.columns)] for bundle in table.bundles]
    return ["## Accuracy per CPU target", "",
            "The same bundle's accuracy on this machine's CPU and on emulated ones (scripts/emulate.sh: qemu-user, "
            "AVX2-only x86 and ARM64), whose int8 kernels differ. Latency measured under emulation is the "
            "emulator's, not the target's: emulated runs are left off the latency plot and the Pareto front.", "",
            markdown_table(cells), "", f"![accuracy per CPU target]({plot_file})", ""]


def write_target_plot(table: TargetAccuracy, path: str | Path) -> None:
    """Grouped bars: one group per bundle, one bar per target; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetune_runtime.atomic_write import atomic_path

    width = 0.8 / max(len(table.columns), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(table.bundles) + 3), 4.5), dpi=120)
    for number, column in enumerate(table.columns):
        positions = [index + (number - (len(table.columns) - 1) / 2) * width for index in range(len(table.bundles))]
        values = [table.accuracy.get((bundle, column), float("nan")) * 100 for bundle in table.bundles]
        bars = axes.bar(positions, values, width, label=column, hatch="//" if "emulated" in column else None)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    known = [value * 100 for value in table.accuracy.values()]
    axes.set_ylim(max(0.0, min(known, default=0) - 5), min(100.0, max(known, default=100) + 3))
    axes.set_xticks(range(len(table.bundles)), table.bundles, fontsize=8)
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Accuracy per CPU target (emulated targets hatched)")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
