"""Bench results of chat bundles (`edgetune-runtime bench` on a text-generation bundle) as their own table.

Their figures are not classification's (no accuracy, no batch sizes): time to first token by prompt
length, decode rate, inter-token latency, memory, size and, where the prompts had reference answers,
perplexity and ROUGE-L, and intent fidelity where a judge bundle read the answers. One row per thread
count of each result.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune.report.table import markdown_table

GENERATION_TASK = "text-generation"
LENGTHS = ("short", "medium", "long")


def generation_table(results: list[tuple[Path, dict]]) -> str:
    """A Markdown table of every run of `results` ((path, bench JSON) of text-generation bundles)."""
    from edgetune.report.merge import device_name_of

    cells = [["name", "device", "threads", "first token ms (short / medium / long)", "prompt tokens",
              "decode tok/s", "ITL p50 ms", "ITL p90 ms", "peak RSS MB", "MB", "perplexity", "ROUGE-L",
              "intent fidelity"]]
    for path, payload in results:
        try:
            bundle, quality = payload["bundle"], payload.get("quality") or {}
            for run in payload["runs"]:
                first = [run["first_token"][length] for length in LENGTHS]
                cells.append([
                    f"{bundle['name']} t{run['threads']}", device_name_of(payload["device"]), str(run["threads"]),
                    " / ".join(f"{length['p50_ms']:.1f}" for length in first),
                    " / ".join(str(sorted(length["prompt_tokens"])[len(length["prompt_tokens"]) // 2])
                               for length in first),
                    f"{run['decode_tokens_per_s']:.1f}", f"{run['inter_token_p50_ms']:.2f}",
                    f"{run['inter_token_p90_ms']:.2f}", _number(payload.get("peak_rss_mb"), ".0f"),
                    _number(bundle["size_mb"], ".1f"), _number(quality.get("perplexity"), ".3f"),
                    _number(quality.get("rouge_l"), ".3f"), _number(quality.get("intent_fidelity"), ".1%")])
        except (KeyError, TypeError, IndexError) as error:
            raise EdgetuneError(f"{path}: the bench result lacks {error}; it may be truncated - run the bench again"
                                ) from None
    return markdown_table(cells)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
