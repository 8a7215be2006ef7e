"""One row of a comparison: a model on a device at one setting, with its accuracy, latency and size."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class ReportRow:
    """What `edgetune report` (bench results from many devices) and a run's report (`edgetune run`) show."""

    name: str
    accuracy: float | None
    """Fraction correct, 0 to 1."""
    p50_ms: float | None
    size_mb: float | None
    p90_ms: float | None = None
    throughput: float | None = None
    """Texts per second."""
    throughput_batch_size: int | None = None
    """The batch size `throughput` was measured at, when it differs from the row's latency batch."""
    macro_f1: float | None = None
    worst_class_f1_change: float | None = None
    """F1 points lost by the worst class against a reference model (negative: lost)."""
    device: str | None = None
    runs_on: str | None = None
    """What ran the model: `edgetune-runtime`, or `PyTorch` for a baseline."""
    variant: str | None = None
    """The graph's quantisation variant (`fp32` for a PyTorch baseline)."""
    baseline: bool = False
    """A reference the others are compared with (a PyTorch fp32 model): plotted apart, as a grey square."""
    bundle: str | None = None
    target: str | None = None
    """The CPU target whose kernels ran it (`avx512-vnni`, `avx2`, `arm64`: edgetune_runtime.targets)."""
    emulated: bool = False
    """Run under an emulator (scripts/emulate.sh): its accuracy is the target's, its latency is not."""
    threads: int | None = None
    batch_size: int | None = None
    source: str | None = None
    """The file the row came from."""
    on_front: bool = False
    """Set by the report: not dominated on (higher accuracy, lower latency)."""


_FIELDS = {field.name for field in dataclasses.fields(ReportRow)}


def as_row(row: ReportRow | Mapping | object) -> ReportRow:
    """A `ReportRow` from a `ReportRow`, a mapping or any dataclass with (some of) its fields; extras are ignored."""
    if isinstance(row, ReportRow):
        return row
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        row = dataclasses.asdict(row)
    if not isinstance(row, Mapping):
        raise TypeError(f"a report row must be a ReportRow, a mapping or a dataclass, not {type(row).__name__}")
    missing = [key for key in ("name", "accuracy", "p50_ms", "size_mb") if key not in row]
    if missing:
        raise ValueError(f"report row {row.get('name', '?')!r} lacks {', '.join(missing)}")
    return ReportRow(**{key: value for key, value in row.items() if key in _FIELDS})
