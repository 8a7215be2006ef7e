"""The chat recipe's `bench` stage: the runtime's generation benchmark of the bundle, on the recipe's held-out prompts.

`edgetune-runtime bench BUNDLE --data prompts.jsonl` is the same measurement by hand on a device;
here the prompts (with their reference answers, for perplexity and ROUGE-L) are the held-out split
of the recipe's data, written beside the result as JSONL so the measurement can be repeated anywhere.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgetune.atomic import atomic_directory
from edgetune.configuration import config_to_dict, setting
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.stage_manifest import write_stage_manifest
from edgetune_runtime.atomic_write import write_json_atomic

log = logging.getLogger(__name__)

RESULT_FILE = "bench.json"
PROMPTS_FILE = "prompts.jsonl"


@dataclass
class ChatBenchStageConfig:
    """How a chat recipe benchmarks its bundle (the runtime's `GenerationBenchConfig`, prompts chosen by split)."""

    split: Literal["test", "validation"] = setting(
        "test", help="Held-out split whose prompts are timed and whose reference answers are scored.")
    threads: tuple[int, ...] = setting((1, 2), help="ONNX Runtime intra-op thread counts to sweep.")
    new_tokens: int = setting(64, help="Tokens decoded per timed prompt (stop tokens ignored, so every run decodes "
                                       "the same count).")
    prompts_per_length: int = setting(3, help="Prompts timed at each of the short, medium and long lengths.")
    quality_rows: int = setting(16, help="Held-out conversations whose reference perplexity and ROUGE-L are scored.")
    cold_starts: int = setting(1, help="Fresh processes timed from start to their first token (0 skips).")

    def __post_init__(self) -> None:
        if not self.threads or any(count < 0 for count in self.threads):
            raise ConfigError(f"threads: {list(self.threads)} must be counts >= 0 (0: ONNX Runtime chooses)")
        for name in ("new_tokens", "prompts_per_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.quality_rows < 0 or self.cold_starts < 0:
            raise ConfigError("quality_rows and cold_starts must not be negative")


def bench_chat_bundle(bundle_dir: str | Path, output_dir: str | Path, config: ChatBenchStageConfig,
                      data_config: ChatDataConfig) -> dict:
    """Benchmark `bundle_dir` on `config.split` of `data_config`; write bench.json and the prompts to `output_dir`."""
    from edgetune.data.chat import load_chat_data
    from edgetune_runtime.tasks.generation.bench import GenerationBenchConfig, bench

    bundle_dir, output_dir = Path(bundle_dir), Path(output_dir)
    if not (bundle_dir / "manifest.json").is_file():
        raise EdgetuneError(f"{bundle_dir}: not a bundle (no manifest.json); pass the output of `edgetune bundle`")
    data = load_chat_data(data_config)
    split = data.test if config.split == "test" and data.test is not None else data.validation
    with atomic_directory(output_dir) as staging:
        with open(staging / PROMPTS_FILE, "w", encoding="utf-8") as handle:
            for example in split.examples:  # the final assistant turn is the reference answer the bench scores
                handle.write(json.dumps({"messages": list(example.messages)}, ensure_ascii=False) + "\n")
        runtime_config = GenerationBenchConfig(
            data=str(staging / PROMPTS_FILE), threads=config.threads, new_tokens=config.new_tokens,
            prompts_per_length=config.prompts_per_length, quality_rows=config.quality_rows,
            cold_starts=config.cold_starts)
        result = bench(bundle_dir, runtime_config, command=["edgetune", "run", "(bench stage)"],
                       progress=log.info).to_dict()
        result["data"] |= {"path": str(output_dir / PROMPTS_FILE), "split": split.name, "source": split.source}
        write_json_atomic(staging / RESULT_FILE, result)
        write_stage_manifest(staging, "bench", "text-generation", {
            "source": {"path": str(bundle_dir)}, "config": config_to_dict(config),
            "split": {"name": split.name, "source": split.source, "rows": len(split)}})
    return result
