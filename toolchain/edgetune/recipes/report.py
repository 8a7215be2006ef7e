"""The report of a run: report.md, report.html and pareto.png in the run directory.

Every benchmarked bundle is one point (accuracy against batch-1 p50 latency, marker size by model
MB); the fine-tuned PyTorch fp32 models (teacher and students) are the baselines, timed and scored
on the same texts the same way (tokenise + forward, batch 1, the same thread count, the runtime's
scorer). Every figure of a row comes from one pass: a bundle's accuracy, macro-F1 and per-class F1
from its bench's batch-1 run, a baseline's from its own batch-1 pass; only throughput is timed at the
largest batch. The points no other point beats on both accuracy and latency form the Pareto front.
A second table lists every quantisation variant each quantize stage tried, as it scored them on the
validation split. Rows, table and plot are the shared `edgetune.report` ones.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
from pathlib import Path

from edgetune.recipes.pytorch_baseline import measure_pytorch_baseline
from edgetune.recipes.schema import Recipe
from edgetune.recipes.stages import stages_for
from edgetune.report.pareto import pareto_front
from edgetune.report.plot import write_pareto_plot
from edgetune.report.rows import ReportRow
from edgetune.report.table import format_table, markdown_table, table_cells
from edgetune_runtime.atomic_write import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

REPORT_FILES = ("report.md", "report.html", "pareto.png")


def write_run_report(recipe: Recipe, result) -> list[Path]:
    """Measure the baselines (cached per model), then write the three report files into the run directory."""
    run_dir = result.run_dir
    outputs = {record.name: record.output_dir for record in result.stages}
    keys = {record.name: record.key for record in result.stages}
    benches = [name for name in outputs if recipe.stages[name].kind == "bench"]
    if not benches:
        log.info("no bench stage: the report needs at least one benchmarked bundle; none written")
        return []
    first_bench = json.loads((outputs[benches[0]] / "bench.json").read_text())
    split = first_bench["data"]["split"]
    texts_file = Path(first_bench["data"]["path"])
    batch = max(run["batch_size"] for run in first_bench["runs"])

    rows: list[ReportRow] = []
    baseline_per_class: dict[str, dict[str, float]] = {}
    if recipe.report.baselines:
        for name, stage in recipe.stages.items():
            if stages_for(recipe.task)[stage.kind].makes != "model":
                continue
            cache = run_dir / "baselines" / f"{name}-{keys[name][:12]}.json"
            # On the texts the bench scored (its count honours the bench's `limit`), in one pass.
            log.info("PyTorch fp32 baseline %s: %d texts one at a time, %d thread(s) (cached per model)", name,
                     first_bench["data"]["texts"], recipe.report.threads)
            baseline = measure_pytorch_baseline(outputs[name], texts_file, cache, recipe.report.threads, batch,
                                                limit=first_bench["data"]["texts"])
            baseline_per_class[name] = baseline["per_class_f1"]
            rows.append(ReportRow(name=name, runs_on="PyTorch", variant="fp32", baseline=True,
                                  accuracy=baseline["accuracy"], macro_f1=baseline["macro_f1"],
                                  size_mb=_weights_mb(outputs[name]), p50_ms=baseline["p50_ms"],
                                  p90_ms=baseline["p90_ms"], throughput=baseline["throughput_texts_per_s"],
                                  throughput_batch_size=batch))
    for name in benches:
        rows.append(_bench_row(recipe, name, outputs, baseline_per_class))
    rows.sort(key=lambda row: row.p50_ms)
    for index in pareto_front([(row.accuracy, row.p50_ms) for row in rows]):
        rows[index].on_front = True
    variants = _quantize_variants(recipe, outputs)
    title = f"edgetune run: {recipe.name}"
    context = {"recipe": str(recipe.source or recipe.name), "description": recipe.description, "split": split,
               "texts": first_bench["data"]["texts"], "device": first_bench["device"], "batch": batch,
               "threads": recipe.report.threads}
    plot_path = run_dir / "pareto.png"
    write_pareto_plot(rows, plot_path, title=title, latency_label="batch-1 p50 latency (ms), lower is better",
                      accuracy_label=f"{split} accuracy (%), higher is better", size_by_mb=True)
    write_text_atomic(run_dir / "report.md", _markdown(title, rows, variants, context))
    write_text_atomic(run_dir / "report.html", _html(title, rows, variants, context, plot_path))
    write_json_atomic(run_dir / "report.json", {"context": context, "rows": [dataclasses.asdict(row) for row in rows],
                                                "quantize_variants": variants})
    log.info("report (%s split)\n%s", split, format_table(rows))
    return [run_dir / name for name in REPORT_FILES]


def _bench_row(recipe: Recipe, name: str, outputs: dict[str, Path],
               baseline_per_class: dict[str, dict[str, float]]) -> ReportRow:
    trained = _trained_ancestor(recipe, name)
    return bundle_row(json.loads((outputs[name] / "bench.json").read_text()), recipe.stages[name].input,
                      baseline_per_class.get(trained) if trained else None)


def bundle_row(bench_result: dict, name: str, baseline_per_class_f1: dict[str, float] | None) -> ReportRow:
    """A bench result's row: accuracy, macro-F1 and per-class F1 (for the worst class's change against the
    baseline) all from its batch-1 run, at its first thread count; throughput from its largest batch."""
    runs = [run for run in bench_result["runs"] if run["threads"] == bench_result["runs"][0]["threads"]]
    batch1 = next(run for run in runs if run["batch_size"] == 1)
    largest = max(runs, key=lambda run: run["batch_size"])
    return ReportRow(name=name, runs_on="edgetune-runtime", variant=bench_result["bundle"].get("variant") or "?",
                     accuracy=batch1["accuracy"], macro_f1=batch1["macro_f1"],
                     worst_class_f1_change=worst_class_f1_change(batch1.get("per_class_f1"), baseline_per_class_f1),
                     size_mb=bench_result["bundle"]["size_mb"], p50_ms=batch1["p50_ms"], p90_ms=batch1["p90_ms"],
                     throughput=largest["throughput_texts_per_s"], throughput_batch_size=largest["batch_size"])


def worst_class_f1_change(per_class_f1: dict[str, float] | None, reference: dict[str, float] | None) -> float | None:
    """The largest per-class F1 loss in points against `reference` (negative: lost), over every label either
    scored (a label one side never saw scores F1 0 there); None when either side is missing."""
    if not per_class_f1 or not reference:
        return None
    labels = set(per_class_f1) | set(reference)
    return min(round(100 * (per_class_f1.get(label, 0.0) - reference.get(label, 0.0)), 2) for label in labels)


def _trained_ancestor(recipe: Recipe, name: str) -> str | None:
    stage = recipe.stages[name]
    while stage.input is not None:
        stage = recipe.stages[stage.input]
    return stage.name if stages_for(recipe.task)[stage.kind].makes == "model" else None


def _weights_mb(model_dir: Path) -> float:
    return round(sum(path.stat().st_size for path in model_dir.glob("*.safetensors")) / 2**20, 2)


def _quantize_variants(recipe: Recipe, outputs: dict[str, Path]) -> list[dict]:
    variants = []
    for name, stage in recipe.stages.items():
        if stage.kind != "quantize":
            continue
        report = json.loads((outputs[name] / "quantize_report.json").read_text())
        for variant, row in sorted(report["variants"].items(), key=lambda item: item[1]["p50_ms"]):
            variants.append({"stage": name, "variant": variant, "chosen": variant == report["chosen"],
                             **{key: row.get(key) for key in ("accuracy", "macro_f1", "worst_class_f1_change_points",
                                                              "size_mb", "p50_ms", "p90_ms", "within_budget",
                                                              "class_f1_within_budget")}})
    return variants


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _variants_table(variants: list[dict]) -> list[list[str]]:
    table = [["stage", "variant", "accuracy", "macro-F1", "worst class ΔF1 (pt)", "MB", "p50 ms", "p90 ms", "note"]]
    for row in variants:
        note = ("kept" if row["chosen"] else "" if row["within_budget"] else
                "a class over the F1 budget" if row.get("class_f1_within_budget") is False else "over budget")
        table.append([row["stage"], row["variant"], f"{row['accuracy']:.2%}", f"{row['macro_f1']:.4f}",
                      _fmt(row["worst_class_f1_change_points"], "+.2f"), f"{row['size_mb']:.1f}",
                      f"{row['p50_ms']:.3f}", f"{row['p90_ms']:.3f}", note])
    return table


def _intro(context: dict) -> str:
    device = context["device"]
    description = f": {context['description']}" if context["description"] else ""
    return (f"Recipe `{context['recipe']}`{description}. Accuracy on the {context['split']} split "
            f"({context['texts']} texts); latency is batch 1 on {context['threads']} thread(s), tokenisation "
            f"included, on {device.get('cpu_model')} ({device.get('usable_cores')} usable cores, onnxruntime "
            f"{device.get('onnxruntime')}). Worst class ΔF1 is against the PyTorch fp32 model each bundle came from, "
            "scored on the same texts.")


def _markdown(title: str, rows: list[ReportRow], variants: list[dict], context: dict) -> str:
    parts = [f"# {title}", "", _intro(context), "", format_table(rows), "",
             "![accuracy against batch-1 p50 latency](pareto.png)", ""]
    if variants:
        parts += ["## Quantisation variants tried (validation split, as the quantize stage scored them)", "",
                  markdown_table(_variants_table(variants)), ""]
    return "\n".join(parts)


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>" for cells in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(title: str, rows: list[ReportRow], variants: list[dict], context: dict, plot_path: Path) -> str:
    # The plot is embedded, so the page can be mailed or attached to a ticket on its own.
    image = base64.b64encode(plot_path.read_bytes()).decode("ascii")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    variants_html = (f"<h2>Quantisation variants tried (validation split)</h2>{_html_table(_variants_table(variants))}"
                     if variants else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(_intro(context))}</p>"
            f"{_html_table(table_cells(rows))}<img alt='accuracy against batch-1 p50 latency' "
            f"src='data:image/png;base64,{image}'>{variants_html}</body></html>\n")
