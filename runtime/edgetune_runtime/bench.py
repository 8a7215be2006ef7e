"""`bench`: how fast and how accurate a bundle is on this device, as one mergeable JSON result.

Measures cold start (a fresh process, from its start to its first prediction), load time, batch-1
latency p50/p90/p99 over real texts of a labelled file with the runtime's own overhead against
raw ONNX Runtime, throughput at each batch size, peak memory, model size and accuracy, for every
thread count asked for. The result names the device (CPU, cores, ISA flags, OS, onnxruntime
version, execution provider), so results from a laptop, a Raspberry Pi and a phone can be merged
by `edgetune report`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgetune_runtime import __version__
from edgetune_runtime.atomic_write import write_json_atomic
from edgetune_runtime.bundle import Bundle, ClassificationBundle
from edgetune_runtime.cold_start import peak_rss_mb, time_cold_starts
from edgetune_runtime.device import describe_machine
from edgetune_runtime.errors import InputError
from edgetune_runtime.latency import Timings, time_batch1, time_batches
from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1
from edgetune_runtime.tasks import TaskBench
from edgetune_runtime.texts_file import read_texts

SCHEMA = "edgetune-runtime-bench"
SCHEMA_VERSION = 3
"""2: every run carries `per_class_f1`, from the same predictions as its accuracy and macro-F1.
3: every result names its `task`; a text-generation result (tasks/generation/bench.py) has its own runs."""


@dataclass(frozen=True)
class BenchConfig:
    """What `bench` measures and how."""

    data: str
    """Labelled texts (CSV, TSV or JSONL) to time and score on: real inputs, not random tokens."""
    text_column: str | None = None
    """Column holding the text; found by common names when left out."""
    label_column: str | None = None
    """Column holding the expected label; found by common names when left out."""
    threads: tuple[int, ...] = (1,)
    """ONNX Runtime intra-op thread counts to sweep (0: ONNX Runtime chooses)."""
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    """Batch sizes to sweep; batch 1 also times raw ONNX Runtime beside the runtime."""
    pin_cores: tuple[int, ...] | None = None
    """Run on these CPU cores only (Linux and Android); the cold-start processes inherit it."""
    limit: int | None = None
    """Use only the first N texts of the file."""
    spread: bool = False
    """With `limit`: take the N texts evenly spaced over the file instead of the first N (a test file sorted
    by label would otherwise give a few labels only)."""
    warmup: int = 20
    """Untimed calls before each timed setting (first calls allocate buffers and fill caches)."""
    cold_starts: int = 3
    """Fresh processes to time for cold start; the median is reported (0 skips it)."""
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """ONNX Runtime execution providers, in order of preference."""
    name: str | None = None
    """What merged reports call this bundle (default: its folder or zip name), e.g. `minilm-int8`."""

    def __post_init__(self) -> None:
        for name in ("threads", "batch_sizes"):
            values = getattr(self, name)
            if not values:
                raise InputError(f"--{name.replace('_', '-')}: give at least one value")
            lowest = 0 if name == "threads" else 1
            if any(not isinstance(v, int) or isinstance(v, bool) or v < lowest for v in values):
                raise InputError(f"--{name.replace('_', '-')}: {', '.join(map(str, values))}: every value must be a "
                                 f"whole number >= {lowest}")
        if self.pin_cores is not None and (not self.pin_cores or any(core < 0 for core in self.pin_cores)):
            raise InputError("--pin-cores: give core numbers >= 0, e.g. 0 or 0,1")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit: {self.limit} must be at least 1")
        if self.warmup < 0 or self.cold_starts < 0:
            raise InputError("--warmup and --cold-starts must be >= 0")


@dataclass
class BenchRun:
    """One (threads, batch size) setting."""

    threads: int
    batch_size: int
    load_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_texts_per_s: float
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float] | None = None
    """F1 of every label expected or predicted, from the same predictions as `accuracy` and `macro_f1`."""
    raw_ort_p50_ms: float | None = None
    """Batch 1: `session.run` alone on pre-tokenised input, timed interleaved with the runtime's calls."""
    overhead_ms: float | None = None
    """Batch 1: median over texts of (the runtime's call - the raw `session.run` on the same text, timed
    back to back): tokenising, arrays, softmax, top-k. Paired, so machine noise largely cancels."""
    overhead_fraction: float | None = None
    """Batch 1: overhead_ms / p50_ms."""
    tokenize_p50_ms: float | None = None
    """Batch 1: the tokenizer alone (part of the overhead), right after a session run as in predict."""


class ResultFile:
    """What every task's bench result does with itself: one JSON document naming the schema and the task."""

    bundle: dict

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "task": self.bundle["task"], **asdict(self)}

    def write(self, path: str | Path) -> Path:
        """Write the JSON result atomically (a half-written result never sits at `path`)."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path


@dataclass
class BenchResult(ResultFile):
    device: dict
    bundle: dict
    data: dict
    command: list[str]
    cold_start: dict | None
    peak_rss_mb: float | None
    runs: list[BenchRun] = field(default_factory=list)
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def bench(bundle_path: str | Path, config: BenchConfig, *, command: list[str] | None = None,
          progress: Callable[[str], None] | None = None) -> BenchResult:
    """Benchmark the bundle at `bundle_path` on this device; see the module docstring."""
    progress = progress or (lambda message: None)
    bundle_path = Path(bundle_path)
    previous_affinity = pin_cores(config.pin_cores) if config.pin_cores is not None else None
    try:
        # Labelled texts are classification's: a bundle of another task is refused in one line.
        probe = ClassificationBundle.load(bundle_path, intra_op_threads=1, providers=config.providers)
        texts, labels = _labelled_texts(config, probe.labels)
        progress(f"{len(texts)} labelled texts from {config.data}")
        cold_start = None
        if config.cold_starts:
            progress(f"cold start: {config.cold_starts} fresh processes")
            cold_start = time_cold_starts(bundle_path, texts[0], config.threads[0], config.cold_starts)
        result = BenchResult(device=describe_device(probe), bundle=_describe_bundle(bundle_path, probe, config.name),
                             data={"path": str(Path(config.data).resolve()), "texts": len(texts)},
                             command=command if command is not None else list(sys.argv),
                             cold_start=cold_start, peak_rss_mb=None)
        del probe
        for threads in config.threads:
            started = time.perf_counter()
            bundle = Bundle.load(bundle_path, intra_op_threads=threads, providers=config.providers)
            load_s = round(time.perf_counter() - started, 4)
            for batch_size in config.batch_sizes:
                progress(f"threads {threads}, batch {batch_size}: timing {len(texts)} texts")
                if batch_size == 1:
                    timings = time_batch1(bundle, texts, config.warmup)
                else:
                    timings = time_batches(bundle, texts, batch_size, config.warmup)
                result.runs.append(_run(threads, batch_size, load_s, timings, labels))
        result.peak_rss_mb = peak_rss_mb()
        return result
    finally:
        if previous_affinity is not None:
            os.sched_setaffinity(0, previous_affinity)


def _run(threads: int, batch_size: int, load_s: float, timings: Timings, labels: list[str]) -> BenchRun:
    run = BenchRun(threads=threads, batch_size=batch_size, load_s=load_s, p50_ms=timings.percentile_ms(50),
                   p90_ms=timings.percentile_ms(90), p99_ms=timings.percentile_ms(99),
                   throughput_texts_per_s=timings.throughput_texts_per_s,
                   accuracy=round(accuracy(labels, timings.predicted), 4),
                   macro_f1=round(macro_f1(labels, timings.predicted), 4),
                   per_class_f1={label: round(f1, 4) for label, f1 in per_class_f1(labels, timings.predicted).items()})
    if timings.raw_ort_ms is not None:
        run.raw_ort_p50_ms = timings.percentile_ms(50, timings.raw_ort_ms)
        run.overhead_ms = timings.percentile_ms(50, [call - raw for call, raw in zip(timings.call_ms,
                                                                                   timings.raw_ort_ms, strict=True)])
        run.overhead_fraction = round(run.overhead_ms / run.p50_ms, 4)
    if timings.tokenize_ms:
        run.tokenize_p50_ms = timings.percentile_ms(50, timings.tokenize_ms)
    return run


def pin_cores(cores: tuple[int, ...]) -> set[int]:
    """Run this process (and the processes it starts) on `cores` only; returns the cores it could use before."""
    if not hasattr(os, "sched_setaffinity"):
        raise InputError(f"--pin-cores: {platform.system()} does not let a process pin itself to cores; "
                         "leave --pin-cores out (or use taskset/start /affinity from the shell)")
    previous = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cores)
    except OSError:
        raise InputError(f"--pin-cores: cannot pin to cores {','.join(map(str, cores))}; this process may use "
                         f"{','.join(map(str, sorted(previous)))}") from None
    return previous


def _labelled_texts(config: BenchConfig, bundle_labels: list[str]) -> tuple[list[str], list[str]]:
    known = set(bundle_labels)
    texts, labels = [], []
    for row in read_texts(config.data, text_column=config.text_column, label_column=config.label_column,
                          need_labels=True):
        if row.label not in known:
            raise InputError(f"{config.data}, row {row.row}: label {row.label!r} is not one of the bundle's "
                             f"{len(bundle_labels)} labels; remove the row or use the data the bundle was trained for")
        texts.append(row.text)
        labels.append(row.label)
        if config.limit is not None and len(texts) == config.limit and not config.spread:
            break
    if not texts:
        raise InputError(f"{config.data}: no texts to benchmark on")
    if config.spread and config.limit is not None and len(texts) > config.limit:
        chosen = [index * len(texts) // config.limit for index in range(config.limit)]
        return [texts[index] for index in chosen], [labels[index] for index in chosen]
    return texts, labels


def describe_device(bundle: Bundle) -> dict:
    """The machine, the runtime's versions and the execution provider `bundle`'s session runs on."""
    import onnxruntime

    return describe_machine() | {
        "onnxruntime": onnxruntime.__version__, "edgetune_runtime": __version__,
        "available_providers": onnxruntime.get_available_providers(),
        "execution_provider": bundle.execution_provider}


def _describe_bundle(path: Path, bundle: Bundle, name: str | None) -> dict:
    manifest = bundle.manifest
    model_file = bundle.directory / manifest["model"]
    tuned_for = manifest.get("tuned_for") or {}
    return {"path": str(path.resolve()), "name": name or (path.stem if path.is_file() else path.name),
            "task": manifest["task"], "format_version": manifest["format_version"],
            "model_sha256": manifest["files"][manifest["model"]],
            "size_mb": round(model_file.stat().st_size / 2**20, 2),
            "variant": tuned_for.get("variant"), "tuned_for": tuned_for, "labels": len(bundle.labels),
            "manifest_metrics": manifest.get("metrics")}


def format_table(result: BenchResult) -> str:
    """The runs as a fixed-width table, with cold start, memory and overhead below it."""
    header = (f"{'threads':>7} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'texts/s':>9} "
              f"{'accuracy':>8} {'macro-F1':>8} {'load s':>7}  runtime overhead")
    lines = [header]
    for run in result.runs:
        overhead = "" if run.overhead_ms is None else (
            f"{run.overhead_ms:+.3f} ms ({run.overhead_fraction:.1%}, tokenizer {run.tokenize_p50_ms:.3f} ms) "
            f"vs raw onnxruntime {run.raw_ort_p50_ms:.3f} ms")
        lines.append(f"{run.threads:>7} {run.batch_size:>5} {run.p50_ms:>8.3f} {run.p90_ms:>8.3f} {run.p99_ms:>8.3f} "
                     f"{run.throughput_texts_per_s:>9.1f} {run.accuracy:>8.2%} {run.macro_f1:>8.4f} "
                     f"{run.load_s:>7.3f}  {overhead}")
    device = result.device
    lines.append(f"device: {device['cpu_model']}, {device['usable_cores']} usable cores, "
                 f"{' '.join(device['isa_flags']) or 'no listed ISA flags'}; onnxruntime {device['onnxruntime']} "
                 f"({device['execution_provider']})")
    if result.cold_start:
        cold = result.cold_start
        lines.append(f"cold start (process start to first prediction): {cold['median_s']:.3f} s median of "
                     f"{len(cold['runs_s'])} (imports {cold['import_s']:.3f} s, load {cold['load_s']:.3f} s, "
                     f"CPU time {cold['cpu_s']} s); "
                     f"peak RSS {cold['peak_rss_mb']} MB")
    lines.append(f"model {result.bundle['size_mb']:.2f} MB; peak RSS of this benchmark {result.peak_rss_mb} MB")
    return "\n".join(lines)


TASK_BENCH = TaskBench(BenchConfig, bench, format_table)
