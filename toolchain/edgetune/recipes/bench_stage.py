"""The `bench` stage: the runtime's benchmark of a bundle, on the recipe's own held-out texts.

`edgetune-runtime bench BUNDLE --data FILE` is the same measurement by hand on a device; here
the texts come from the recipe's data (the split the report is about), written beside the result
so the measurement can be repeated anywhere.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgetune.atomic import atomic_directory
from edgetune.configuration import config_to_dict, setting
from edgetune.data.config import DataConfig
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.stage_manifest import write_stage_manifest
from edgetune_runtime.atomic_write import write_json_atomic

log = logging.getLogger(__name__)

RESULT_FILE = "bench.json"
TEXTS_FILE = "texts.csv"


@dataclass
class BenchStageConfig:
    """How a recipe benchmarks a bundle (the runtime's `BenchConfig`, with the texts chosen by split)."""

    split: Literal["test", "validation"] = setting(
        "test", help="Held-out split timed and scored; test falls back to validation when the data has no test "
                     "split.")
    threads: tuple[int, ...] = setting((1,), help="ONNX Runtime intra-op thread counts; 1 is what a phone app "
                                                  "usually gets.")
    batch_sizes: tuple[int, ...] = setting((1, 32), help="Batch 1 gives the latency the report plots; the largest "
                                                         "gives its throughput.")
    limit: int | None = setting(None, help="Use only the first N texts of the split. Default: all of them.")
    warmup: int = setting(20, help="Untimed calls before each timed setting.")
    cold_starts: int = setting(3, help="Fresh processes timed from start to first prediction (0 skips).")

    def __post_init__(self) -> None:
        if not self.threads or any(count < 0 for count in self.threads):
            raise ConfigError(f"threads: {list(self.threads)} must be counts >= 0 (0: ONNX Runtime chooses)")
        if not self.batch_sizes or any(size < 1 for size in self.batch_sizes):
            raise ConfigError(f"batch_sizes: {list(self.batch_sizes)} must be sizes >= 1")
        if 1 not in self.batch_sizes:
            raise ConfigError(f"batch_sizes: {list(self.batch_sizes)} must include 1 (the report plots batch 1)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit: {self.limit} must be at least 1")
        if self.warmup < 0 or self.cold_starts < 0:
            raise ConfigError("warmup and cold_starts must not be negative")


def bench_bundle(bundle_dir: str | Path, output_dir: str | Path, config: BenchStageConfig,
                 data_config: DataConfig) -> dict:
    """Benchmark `bundle_dir` on `config.split` of `data_config`; write bench.json and the texts to `output_dir`."""
    from edgetune.data.load import load_labelled_data
    from edgetune_runtime.bench import BenchConfig, bench

    bundle_dir, output_dir = Path(bundle_dir), Path(output_dir)
    if not (bundle_dir / "manifest.json").is_file():
        raise EdgetuneError(f"{bundle_dir}: not a bundle (no manifest.json); pass the output of `edgetune bundle`")
    data = load_labelled_data(data_config)
    split = data.test if config.split == "test" and data.test is not None else data.validation
    with atomic_directory(output_dir) as staging:
        with open(staging / TEXTS_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(split.texts, split.labels, strict=True))
        runtime_config = BenchConfig(data=str(staging / TEXTS_FILE), text_column="text", label_column="label",
                                     threads=config.threads, batch_sizes=config.batch_sizes, limit=config.limit,
                                     warmup=config.warmup, cold_starts=config.cold_starts)
        result = bench(bundle_dir, runtime_config, command=["edgetune", "run", "(bench stage)"],
                       progress=log.info).to_dict()
        result["data"] |= {"path": str(output_dir / TEXTS_FILE), "split": split.name, "source": split.source}
        # Every run carries per-class F1 from its own predictions: the report takes a row's figures from one run.
        write_json_atomic(staging / RESULT_FILE, result)
        write_stage_manifest(staging, "bench", "text-classification", {
            "source": {"path": str(bundle_dir)}, "config": config_to_dict(config),
            "split": {"name": split.name, "source": split.source, "rows": len(split)}})
    return result
