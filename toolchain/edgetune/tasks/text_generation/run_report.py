"""The report of a chat recipe run: base against fine-tuned, what quantisation cost, how fast the bundle runs.

Written after the last stage into the run directory: `report.md` (the evaluation's table, the
quantisation variants' table, the bundle's size and the device bench when the recipe has one),
`report.json` (the same figures, for scripts) and `quality.png` (ROUGE-L, intent fidelity and
placeholder style per model as bars: people compare models at a glance there).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgetune_runtime.atomic_write import atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger("edgetune")

PLOTTED = (("rouge_l", "ROUGE-L F"), ("intent_fidelity", "intent fidelity"),
           ("placeholder_share", "{{placeholder}} style"))


def write_chat_run_report(recipe, result) -> list[Path]:
    from edgetune.tasks.text_generation.evaluate import SCORES_FILE, format_scores_table
    from edgetune.tasks.text_generation.quantize import VARIANTS_REPORT, format_variant_table

    outputs = {record.name: record.output_dir for record in result.stages}
    kinds = {name: recipe.stages[name].kind for name in outputs}
    found = {kind: [outputs[name] for name in outputs if kinds[name] == kind] for kind in set(kinds.values())}
    evaluations = [path / SCORES_FILE for path in found.get("evaluate", []) if (path / SCORES_FILE).is_file()]
    variants = [path / VARIANTS_REPORT for path in found.get("quantize", []) if (path / VARIANTS_REPORT).is_file()]
    benches = [path / "bench.json" for path in found.get("bench", []) if (path / "bench.json").is_file()]
    if not evaluations:
        log.info("no evaluate stage: the chat report compares base and fine-tuned models; none written")
        return []
    scores = json.loads(evaluations[0].read_text())
    sections = [f"# {recipe.name}: base against fine-tuned\n",
                f"{scores['prompts']} held-out test prompts over {scores['intents']} intents, greedy answers.\n",
                "```\n" + format_scores_table(scores) + "\n```\n"]
    summary: dict = {"recipe": recipe.name, "evaluation": scores}
    if variants:
        quantized = json.loads(variants[0].read_text())
        summary["quantization"] = quantized
        sections += ["## Quantisation variants (held-out validation prompts, this CPU)\n",
                     "```\n" + format_variant_table(quantized["variants"], quantized["chosen"]) + "\n```\n",
                     f"Kept: {quantized['chosen']} ({quantized['reason']}).\n"]
    bundles = found.get("bundle", [])
    if bundles:
        size_mb = sum(path.stat().st_size for path in bundles[0].rglob("*") if path.is_file()) / 1e6
        summary["bundle_mb"] = round(size_mb, 1)
        sections.append(f"Bundle: `{bundles[0].name}`, {size_mb:.1f} MB.\n")
    for bench in benches:
        summary.setdefault("benches", []).append(json.loads(bench.read_text()))
        sections.append(f"Device bench: `{bench}`.\n")
    run_dir = Path(result.run_dir)
    write_text_atomic(run_dir / "report.md", "\n".join(sections))
    write_json_atomic(run_dir / "report.json", summary)
    _plot(scores, run_dir / "quality.png")
    return [run_dir / "report.md", run_dir / "report.json", run_dir / "quality.png"]


def _plot(scores: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores["models"])
    figure, axis = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = [scores["models"][name].get(key) or 0.0 for key, _ in PLOTTED]
        positions = [slot + index * width for slot in range(len(PLOTTED))]
        bars = axis.bar(positions, values, width, label=name)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks([slot + width * (len(names) - 1) / 2 for slot in range(len(PLOTTED))],
                    [label for _, label in PLOTTED])
    axis.set_ylim(0, 1.05)
    axis.set_title(f"{scores['prompts']} held-out prompts, greedy")
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as staging:
        figure.savefig(staging, format="png", dpi=120)
    plt.close(figure)
