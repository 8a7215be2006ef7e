"""The report of a run: report.md, report.html and pareto.png in the run directory.

Every benchmarked bundle is one point (accuracy against batch-1 p50 latency, marker size by model
MB); the fine-tuned PyTorch fp32 models (teacher and students) are the baselines, timed on the same
texts the same way (tokenise + forward, batch 1, the same thread count). The points no other point
beats on both accuracy and latency form the Pareto front. A second table lists every quantisation
variant each quantize stage tried, as it scored them on the validation split.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import write_json_atomic
from edgetune.recipes.pytorch_baseline import measure_pytorch_baseline
from edgetune.recipes.schema import Recipe
from edgetune.recipes.stages import STAGES

log = logging.getLogger(__name__)

REPORT_FILES = ("report.md", "report.html", "pareto.png")


@dataclass
class ReportRow:
    """One measured model: a bundle on the device runtime, or a PyTorch fp32 baseline."""

    name: str
    kind: str
    """`bundle` (ONNX Runtime through edgetune-runtime) or `pytorch fp32`."""
    variant: str
    accuracy: float
    macro_f1: float
    worst_class_f1_change_points: float | None
    """Worst per-class F1 change against the PyTorch fp32 model it came from (None for that model)."""
    size_mb: float
    p50_ms: float
    p90_ms: float
    throughput_texts_per_s: float | None
    throughput_batch_size: int | None
    on_front: bool = False


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
    trained_per_class: dict[str, dict] = {}
    for name, stage in recipe.stages.items():
        if STAGES[stage.kind].makes != "model":
            continue
        metrics = json.loads((outputs[name] / "metrics.json").read_text())[split]
        trained_per_class[name] = {label: values["f1"] for label, values in metrics["per_class"].items()}
        if recipe.report.baselines:
            cache = run_dir / "baselines" / f"{name}-{keys[name][:12]}.json"
            timing = measure_pytorch_baseline(outputs[name], texts_file, cache, recipe.report.latency_texts,
                                              recipe.report.threads, batch)
            rows.append(ReportRow(name, "pytorch fp32", "fp32", metrics["accuracy"], metrics["macro_f1"], None,
                                  _weights_mb(outputs[name]), timing["p50_ms"], timing["p90_ms"],
                                  timing["throughput_texts_per_s"], batch))
    for name in benches:
        rows.append(_bench_row(recipe, name, outputs, trained_per_class))
    _mark_front(rows)
    variants = _quantize_variants(recipe, outputs)
    title = f"edgetune run: {recipe.name}"
    context = {"recipe": str(recipe.source or recipe.name), "description": recipe.description, "split": split,
               "texts": first_bench["data"]["texts"], "device": first_bench["device"], "batch": batch,
               "threads": recipe.report.threads}
    plot_path = run_dir / "pareto.png"
    _write_plot(rows, plot_path, title, split)
    _write_text(run_dir / "report.md", _markdown(title, rows, variants, context))
    _write_text(run_dir / "report.html", _html(title, rows, variants, context, plot_path))
    write_json_atomic(run_dir / "report.json", {"context": context, "rows": [vars(row) for row in rows],
                                                "quantize_variants": variants})
    log.info("report (%s split)\n%s", split, format_markdown_table(_main_table(rows)))
    return [run_dir / name for name in REPORT_FILES]


def _write_text(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)


def _bench_row(recipe: Recipe, name: str, outputs: dict[str, Path], trained_per_class: dict[str, dict]) -> ReportRow:
    result = json.loads((outputs[name] / "bench.json").read_text())
    runs = [run for run in result["runs"] if run["threads"] == result["runs"][0]["threads"]]
    batch1 = next(run for run in runs if run["batch_size"] == 1)
    largest = max(runs, key=lambda run: run["batch_size"])
    trained = _trained_ancestor(recipe, name)
    reference = trained_per_class.get(trained) if trained else None
    ours = result.get("per_class_f1") or {}
    worst = (min(round(100 * (ours.get(label, 0.0) - f1), 2) for label, f1 in reference.items())
             if reference and ours else None)
    bundle_name = recipe.stages[name].input
    return ReportRow(f"{bundle_name}", "bundle", result["bundle"].get("variant") or "?", batch1["accuracy"],
                     batch1["macro_f1"], worst, result["bundle"]["size_mb"], batch1["p50_ms"], batch1["p90_ms"],
                     largest["throughput_texts_per_s"], largest["batch_size"])


def _trained_ancestor(recipe: Recipe, name: str) -> str | None:
    stage = recipe.stages[name]
    while stage.input is not None:
        stage = recipe.stages[stage.input]
    return stage.name if STAGES[stage.kind].makes == "model" else None


def _weights_mb(model_dir: Path) -> float:
    return round(sum(path.stat().st_size for path in model_dir.glob("*.safetensors")) / 2**20, 2)


def _mark_front(rows: list[ReportRow]) -> None:
    from edgetune.report.pareto import pareto_front

    front = set(pareto_front([(row.accuracy, row.p50_ms) for row in rows]))
    for index, row in enumerate(rows):
        row.on_front = index in front


def _quantize_variants(recipe: Recipe, outputs: dict[str, Path]) -> list[dict]:
    variants = []
    for name, stage in recipe.stages.items():
        if stage.kind != "quantize":
            continue
        report = json.loads((outputs[name] / "quantize_report.json").read_text())
        for variant, row in sorted(report["variants"].items(), key=lambda item: item[1]["p50_ms"]):
            variants.append({"stage": name, "variant": variant, "chosen": variant == report["chosen"],
                             **{key: row.get(key) for key in ("accuracy", "macro_f1", "worst_class_f1_change_points",
                                                              "size_mb", "p50_ms", "p90_ms", "within_budget")}})
    return variants


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _main_table(rows: list[ReportRow]) -> list[list[str]]:
    table = [["model", "runs on", "variant", "accuracy", "macro-F1", "worst class ΔF1 (pt)", "MB", "p50 ms",
              "p90 ms", "texts/s", "Pareto"]]
    for row in sorted(rows, key=lambda r: r.p50_ms):
        throughput = "-" if row.throughput_texts_per_s is None else (
            f"{row.throughput_texts_per_s:.1f} (batch {row.throughput_batch_size})")
        runs_on = "edgetune-runtime" if row.kind == "bundle" else "PyTorch"
        table.append([row.name, runs_on, row.variant, f"{row.accuracy:.2%}", f"{row.macro_f1:.4f}",
                      _fmt(row.worst_class_f1_change_points, "+.2f"), f"{row.size_mb:.1f}", f"{row.p50_ms:.3f}",
                      f"{row.p90_ms:.3f}", throughput, "yes" if row.on_front else ""])
    return table


def _variants_table(variants: list[dict]) -> list[list[str]]:
    table = [["stage", "variant", "accuracy", "macro-F1", "worst class ΔF1 (pt)", "MB", "p50 ms", "p90 ms", "note"]]
    for row in variants:
        note = "kept" if row["chosen"] else ("" if row["within_budget"] else "over budget")
        table.append([row["stage"], row["variant"], f"{row['accuracy']:.2%}", f"{row['macro_f1']:.4f}",
                      _fmt(row["worst_class_f1_change_points"], "+.2f"), f"{row['size_mb']:.1f}",
                      f"{row['p50_ms']:.3f}", f"{row['p90_ms']:.3f}", note])
    return table


def format_markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cells) + " |" for cells in table[1:]]
    return "\n".join(lines)


def _intro(context: dict) -> str:
    device = context["device"]
    description = f": {context['description']}" if context["description"] else ""
    return (f"Recipe `{context['recipe']}`{description}. Accuracy on the {context['split']} split "
            f"({context['texts']} texts); latency is batch 1 on {context['threads']} thread(s), tokenisation "
            f"included, on {device.get('cpu_model')} ({device.get('usable_cores')} usable cores, onnxruntime "
            f"{device.get('onnxruntime')}). Worst class ΔF1 is against the PyTorch fp32 model each bundle came from.")


def _markdown(title: str, rows: list[ReportRow], variants: list[dict], context: dict) -> str:
    parts = [f"# {title}", "", _intro(context), "", format_markdown_table(_main_table(rows)), "",
             "![accuracy against batch-1 p50 latency](pareto.png)", ""]
    if variants:
        parts += ["## Quantisation variants tried (validation split, as the quantize stage scored them)", "",
                  format_markdown_table(_variants_table(variants)), ""]
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
            f"{_html_table(_main_table(rows))}<img alt='accuracy against batch-1 p50 latency' "
            f"src='data:image/png;base64,{image}'>{variants_html}</body></html>\n")


def _write_plot(rows: list[ReportRow], path: Path, title: str, split: str) -> None:
    # Not edgetune.report.plot.write_pareto_plot: a run's plot sizes markers by MB and sets the PyTorch
    # baselines apart, which that cross-device plot (colour by device) does not.
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    largest_mb = max(row.size_mb for row in rows) or 1.0
    for row in rows:
        marker = "s" if row.kind == "pytorch fp32" else "o"
        color = "tab:gray" if row.kind == "pytorch fp32" else ("tab:red" if row.on_front else "tab:blue")
        # Marker area in proportion to size, with a floor so tiny bundles stay visible.
        axes.scatter(row.p50_ms, 100 * row.accuracy, s=60 + 900 * row.size_mb / largest_mb, marker=marker,
                     color=color, alpha=0.6, edgecolors="black", linewidths=0.6)
        axes.annotate(f"{row.name}\n{row.variant}, {row.size_mb:.1f} MB", (row.p50_ms, 100 * row.accuracy),
                      textcoords="offset points", xytext=(8, 6), fontsize=8)
    front = sorted((row for row in rows if row.on_front), key=lambda row: row.p50_ms)
    axes.plot([row.p50_ms for row in front], [100 * row.accuracy for row in front], "--", color="tab:red",
              linewidth=1, label="Pareto front")
    axes.scatter([], [], marker="s", color="tab:gray", label="PyTorch fp32 baseline")
    axes.scatter([], [], marker="o", color="tab:blue", label="bundle (marker area ~ MB)")
    axes.scatter([], [], marker="o", color="tab:red", label="bundle on the front")
    axes.set_xlabel("batch-1 p50 latency (ms, lower is better)")
    axes.set_ylabel(f"{split} accuracy (%)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    # Below the axes, so it never hides a point.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=8, frameon=False)
    axes.margins(x=0.25, y=0.15)
    low, high = axes.get_ylim()
    if high - low < 2.0:  # at least two accuracy points tall, so a 0.1-point gap does not look like a cliff
        middle = (low + high) / 2
        axes.set_ylim(middle - 1.0, middle + 1.0)
    figure.tight_layout()
    staging = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(staging)
    plt.close(figure)
    staging.replace(path)
