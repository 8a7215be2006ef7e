"""Cold start, as an app sees it: a fresh process imports the runtime, loads a bundle and gets its first result.

    python -m edgetune_runtime.cold_start BUNDLE TEXT THREADS [TASK_OPTIONS_JSON]

prints one JSON line with the wall-clock moment the first result (a prediction, a generation's first
token: the bundle's `first_result`) was ready, so the parent (`edgetune-runtime bench`, every task's
bench through `time_cold_starts`) can time from just before it started the process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(arguments: list[str]) -> None:
    started = time.perf_counter()
    from edgetune_runtime.bundle import Bundle  # imports numpy, onnxruntime and tokenizers: part of cold start

    imported = time.perf_counter()
    task_options = _json_loads(arguments[3]) if len(arguments) > 3 else {}
    bundle = Bundle.load(arguments[0], intra_op_threads=int(arguments[2]), **task_options)
    loaded = time.perf_counter()
    bundle.first_result(arguments[1])
    first_prediction_unix = time.time()
    predicted = time.perf_counter()

    import json

    print(json.dumps({"first_prediction_unix": first_prediction_unix, "import_s": imported - started,
                      "load_s": loaded - imported, "first_predict_s": predicted - loaded,
                      "cpu_s": cpu_seconds(), "peak_rss_mb": peak_rss_mb()}))


def _json_loads(text: str) -> dict:
    import json

    return json.loads(text)


def time_cold_starts(bundle_path: Path, text: str, threads: int, count: int, task_options: dict | None = None) -> dict:
    """Median over `count` fresh processes of (first result ready) - (just before the process was started);
    `task_options` go to `Bundle.load` there (a generation bundle's engine)."""
    # Imported here, not above: the fresh process imports this module, and its imports count in cold start.
    import json
    import statistics
    import subprocess

    from edgetune_runtime.errors import InputError

    runs = []
    for _ in range(count):
        started_unix = time.time()
        options = [json.dumps(task_options)] if task_options else []
        finished = subprocess.run([sys.executable, "-m", "edgetune_runtime.cold_start", str(bundle_path), text,
                                   str(threads), *options], capture_output=True, text=True)
        if finished.returncode != 0:
            last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"{bundle_path}: the cold-start process failed: {last}")
        report = json.loads(finished.stdout.strip().splitlines()[-1])
        runs.append(report | {"cold_start_s": report["first_prediction_unix"] - started_unix})
    median = statistics.median(run["cold_start_s"] for run in runs)
    return {"median_s": round(median, 4), "runs_s": [round(run["cold_start_s"], 4) for run in runs],
            "import_s": round(statistics.median(run["import_s"] for run in runs), 4),
            "load_s": round(statistics.median(run["load_s"] for run in runs), 4),
            "first_predict_s": round(statistics.median(run["first_predict_s"] for run in runs), 4),
            "cpu_s": round(statistics.median(run["cpu_s"] for run in runs), 4) if runs[0]["cpu_s"] else None,
            "peak_rss_mb": max((run["peak_rss_mb"] or 0) for run in runs) or None, "threads": threads}


def cpu_seconds() -> float | None:
    """CPU time this process has used since it started (user + system): what cold start costs on an idle
    core, whatever else the machine is running. None where the OS does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 4)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB; None where the OS does not say (Windows)."""
    try:
        # Linux: the high-water mark of this process's own memory. getrusage's ru_maxrss would also count
        # the parent's pages at fork, so a child of a big benchmark would report the benchmark's size.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # macOS reports bytes, Linux KiB


if __name__ == "__main__":
    main(sys.argv[1:])
