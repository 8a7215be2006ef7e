"""Report rows as a Markdown table (also readable as plain text)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgetune.report.rows import ReportRow, as_row

# (header, how to show a row's value, whether any row must have it for the column to appear)
_COLUMNS: list[tuple[str, Callable[[ReportRow], str], Callable[[ReportRow], object]]] = [
    ("name", lambda r: r.name, lambda r: r.name),
    ("runs on", lambda r: r.runs_on or "", lambda r: r.runs_on),
    ("variant", lambda r: r.variant or "", lambda r: r.variant),
    ("device", lambda r: r.device or "", lambda r: r.device),
    ("threads", lambda r: _number(r.threads, "d"), lambda r: r.threads),
    ("batch", lambda r: _number(r.batch_size, "d"), lambda r: r.batch_size),
    ("accuracy", lambda r: "" if r.accuracy is None else f"{r.accuracy:.2%}", lambda r: r.accuracy),
    ("macro-F1", lambda r: _number(r.macro_f1, ".4f"), lambda r: r.macro_f1),
    ("worst class ΔF1 (pt)", lambda r: _number(r.worst_class_f1_change, "+.2f"), lambda r: r.worst_class_f1_change),
    ("p50 ms", lambda r: _number(r.p50_ms, ".3f"), lambda r: r.p50_ms),
    ("p90 ms", lambda r: _number(r.p90_ms, ".3f"), lambda r: r.p90_ms),
    ("texts/s", lambda r: _throughput(r), lambda r: r.throughput),
    ("MB", lambda r: _number(r.size_mb, ".1f"), lambda r: r.size_mb),
    ("Pareto", lambda r: "★" if r.on_front else "", lambda r: r.on_front),
]


def _number(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _throughput(row: ReportRow) -> str:
    if row.throughput is None:
        return ""
    return f"{row.throughput:.1f}" + ("" if row.throughput_batch_size is None else
                                      f" (batch {row.throughput_batch_size})")


def table_cells(rows: Sequence[ReportRow | dict]) -> list[list[str]]:
    """The header, then one list of cells per row; columns no row has a value for are left out."""
    rows = [as_row(row) for row in rows]
    columns = [(header, show) for header, show, present in _COLUMNS if any(present(row) for row in rows)]
    return [[header for header, _ in columns], *[[show(row) for _, show in columns] for row in rows]]


def format_table(rows: Sequence[ReportRow | dict]) -> str:
    """A Markdown table of `rows` (also readable as plain text)."""
    return markdown_table(table_cells(rows))


def markdown_table(cells: list[list[str]]) -> str:
    """Header and rows of cells as a Markdown table."""
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)
