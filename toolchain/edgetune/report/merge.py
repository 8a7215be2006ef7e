"""`report`: bench results from many devices → one comparison table (report.md) and pareto.png."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgetune.atomic import atomic_directory
from edgetune.configuration import setting
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.report.generation import GENERATION_TASK, generation_table
from edgetune.report.pareto import pareto_front
from edgetune.report.plot import write_pareto_plot
from edgetune.report.rows import ReportRow
from edgetune.report.table import format_table
from edgetune.report.targets import target_accuracy, targets_markdown, write_target_plot
from edgetune_runtime.atomic_write import write_text_atomic
from edgetune_runtime.targets import cpu_target

TABLE_FILE = "report.md"
PLOT_FILE = "pareto.png"
TARGETS_PLOT_FILE = "targets.png"


@dataclass
class ReportConfig:
    """What the merged report compares."""

    batch_size: int = setting(
        1, help="The plot and the Pareto front use runs at this batch size (latencies of other sizes are per "
                "batch).")
    latency: Literal["p50_ms", "p90_ms"] = setting("p50_ms", help="Latency on the plot's x axis.")
    title: str = setting("Accuracy against batch-1 latency", help="Title of the table and the plot.")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: {self.batch_size} must be at least 1")
        if self.latency not in ("p50_ms", "p90_ms"):
            raise ConfigError(f"latency: {self.latency!r} must be p50_ms or p90_ms")


@dataclass
class ReportResult:
    output_dir: Path
    rows: list[ReportRow]
    table: str
    front: list[ReportRow]


def report(results: Sequence[str | Path], output_dir: str | Path, config: ReportConfig, *,
           force: bool = False) -> ReportResult:
    """Merge `edgetune-runtime bench` JSON files into `output_dir`/report.md and pareto.png."""
    if not results:
        raise ConfigError("no result files given; pass one or more JSON files from `edgetune-runtime bench -o`")
    payloads = [(Path(path), read_bench(path)) for path in results]
    # Chat bundles have speed figures of their own (first token, decode rate): their own table, no accuracy plot.
    generation = [(path, payload) for path, payload in payloads if payload.get("task") == GENERATION_TASK]
    rows = [row for path, payload in payloads if payload.get("task") != GENERATION_TASK
            for row in _classification_rows(path, payload)]
    # An emulated run's latency is the emulator's, not the target's: it is in the table and the per-target
    # accuracy, never on the latency plot or the Pareto front.
    plotted = [row for row in rows if row.batch_size == config.batch_size and not row.emulated]
    if rows and not plotted and not all(row.emulated for row in rows):
        sizes = sorted({row.batch_size for row in rows})
        raise ConfigError(f"no run at batch size {config.batch_size} in these results (they have "
                          f"{', '.join(map(str, sizes))}); pass --batch-size with one of them")
    for index in pareto_front([(row.accuracy, getattr(row, config.latency)) for row in plotted]):
        plotted[index].on_front = True
    classification_table = format_table(rows) if rows else None
    targets = target_accuracy(rows, config.batch_size)
    chat_table = generation_table(generation) if generation else None
    table = "\n\n".join(text for text in (classification_table, chat_table) if text)
    with atomic_directory(output_dir, overwrite=force) as staging:
        if plotted:
            write_pareto_plot(plotted, staging / PLOT_FILE, title=config.title, latency=config.latency)
        if targets.emulated:
            write_target_plot(targets, staging / TARGETS_PLOT_FILE)
        write_text_atomic(staging / TABLE_FILE, _markdown(rows, classification_table, chat_table, config, results,
                                                          targets_markdown(targets, TARGETS_PLOT_FILE)))
    return ReportResult(Path(output_dir), rows, table, [row for row in plotted if row.on_front])


def _markdown(rows: list[ReportRow], classification_table: str | None, chat_table: str | None, config: ReportConfig,
              results: Sequence[str | Path], targets_section: list[str]) -> str:
    lines = [f"# {config.title}", ""]
    if classification_table:
        front = [row.name for row in rows if row.on_front]
        lines += [f"{len(rows)} classification runs. ★ marks the Pareto front at batch size {config.batch_size}: no "
                  f"other run is both more accurate and faster ({config.latency.removesuffix('_ms')}).", "",
                  classification_table, "", f"![accuracy against latency]({PLOT_FILE})", "",
                  "Pareto front, fastest first: " + (", ".join(front) or "none"), "", *targets_section]
    if chat_table:
        lines += ["Chat models: time to first token by prompt length (p50), greedy decode rate and inter-token "
                  "latency, peak memory of the bench, bundle size, and the reference answers' perplexity where "
                  "the prompts had them.", "", chat_table, ""]
    return "\n".join([*lines, f"{len(results)} result files:", *[f"- `{path}`" for path in results], ""])


def rows_from_bench(path: str | Path) -> list[ReportRow]:
    """One row per run of an `edgetune-runtime bench` result of a classification bundle (any schema version up to
    this one's: version 1 lacks per-class F1, which these rows do not show); a file that is not one raises
    `EdgetuneError`."""
    payload = read_bench(path)
    if payload.get("task") == GENERATION_TASK:
        raise EdgetuneError(f"{path}: a text-generation bench result has no classification rows")
    return _classification_rows(Path(path), payload)


def read_bench(path: str | Path) -> dict:
    """An `edgetune-runtime bench` result of any task, its schema and version checked."""
    from edgetune_runtime.bench import SCHEMA, SCHEMA_VERSION
    from edgetune_runtime.json_limits import loads_bounded

    path = Path(path)
    try:  # results come from other devices and people: nesting is bounded before json recurses into it
        payload = loads_bounded(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise EdgetuneError(f"{path}: no such file") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise EdgetuneError(f"{path}: not valid JSON ({error}); pass files written by `edgetune-runtime bench -o`"
                            ) from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise EdgetuneError(f"{path}: not an edgetune-runtime bench result (its 'schema' is not {SCHEMA!r}); "
                            "pass files written by `edgetune-runtime bench -o`")
    version = payload.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise EdgetuneError(f"{path}: bench schema version {version!r} is newer than this edgetune reads "
                            f"({SCHEMA_VERSION}); upgrade edgetune")
    return payload


def _classification_rows(path: Path, payload: dict) -> list[ReportRow]:
    try:
        device, bundle = payload["device"], payload["bundle"]
        device_name = device_name_of(device)
        # The device has its own column and colour; the name says what ran and how.
        return [ReportRow(name=f"{bundle['name']} t{run['threads']}",
                          accuracy=run["accuracy"], p50_ms=run["p50_ms"], p90_ms=run["p90_ms"],
                          size_mb=bundle["size_mb"], throughput=run["throughput_texts_per_s"],
                          macro_f1=run.get("macro_f1"), device=device_name, bundle=bundle["name"],
                          target=cpu_target(device), emulated=bool(device.get("emulated")),
                          threads=run["threads"], batch_size=run["batch_size"], source=str(path))
                for run in payload["runs"]]
    except (KeyError, TypeError) as error:
        raise EdgetuneError(f"{path}: the bench result lacks {error}; it may be truncated - run the bench again"
                            ) from None


def _short_cpu(model: str) -> str:
    for noise in ("(R)", "(TM)", "(tm)", " CPU", " Processor", " processor"):
        model = model.replace(noise, "")
    return " ".join(model.split())


def device_name_of(device: dict) -> str:
    """The device as report columns name it: CPU, usable cores, architecture and a non-CPU provider."""
    provider = device.get("execution_provider", "").removesuffix("ExecutionProvider")
    return (f"{_short_cpu(device['cpu_model'].split(', emulated by')[0])}, {device['usable_cores']} cores, "
            f"{device['architecture']}" + (f", {provider}" if provider and provider != "CPU" else "")
            + (f", emulated ({device['emulated']})" if device.get("emulated") else ""))
