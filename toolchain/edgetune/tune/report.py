"""The search's front as a PNG (the plotter of every edgetune report) and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from edgetune.report.plot import write_pareto_plot
from edgetune.tune.config import TuneConfig
from edgetune_runtime.atomic_write import write_text_atomic


def write_front_plot(rows: list[dict], path: Path, config: TuneConfig, chosen: dict) -> Path:
    """Validation metric against int8 p50 latency of every measured trial, marker area by MB, front ringed."""
    plotted = [{"name": f"#{row['number']}" + (" (chosen)" if row["number"] == chosen["number"] else ""),
                "accuracy": row[config.objective], "p50_ms": row["p50_ms"], "size_mb": row["size_mb"],
                "variant": "int8"}
               for row in rows if row["state"] == "complete" and row["p50_ms"] is not None
               and row.get("repeat_of") is None]  # a repeat is its earlier trial's point, drawn once
    label = "accuracy" if config.objective == "accuracy" else "macro-F1"
    write_pareto_plot(plotted, path, title=f"edgetune tune {config.study}: int8 trials on this CPU",
                      latency_label=f"batch-1 p50 latency (ms, {config.threads} thread), lower is better",
                      accuracy_label=f"validation {label} (%), higher is better", size_by_mb=True)
    return path


def _cell(value, spec: str = "") -> str:
    if value is None:
        return ""
    return format(value, spec) if spec else str(value)


def trial_table(rows: list[dict], objective: str) -> list[list[str]]:
    """Header and one row per trial: every parameter, the metrics, state and seconds."""
    names = list(dict.fromkeys(name for row in rows for name in row["params"]))
    table = [["trial", "state", "front", *names, objective, "p50 ms", "p90 ms", "MB", "epochs", "seconds"]]
    for row in rows:
        state = row["state"] if row.get("repeat_of") is None else f"{row['state']} (repeat of {row['repeat_of']})"
        table.append([str(row["number"]), state, "yes" if row["on_front"] else "",
                      *[_cell(row["params"].get(name), ".4g" if isinstance(row["params"].get(name), float) else "")
                        for name in names],
                      "" if row[objective] is None else f"{100 * row[objective]:.2f}%", _cell(row["p50_ms"], ".3f"),
                      _cell(row["p90_ms"], ".3f"), _cell(row["size_mb"], ".1f"), _cell(row["epochs_run"], ".3g"),
                      _cell(row["seconds"], ".0f")])
    return table


def write_front_html(rows: list[dict], path: Path, config: TuneConfig, chosen: dict, reason: str,
                     plot_path: Path) -> Path:
    # The plot is embedded, so the page can be mailed or attached to a ticket on its own.
    image = base64.b64encode(plot_path.read_bytes()).decode("ascii")
    table = trial_table(rows, config.objective)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table[0])
    body = []
    for row, cells in zip(rows, table[1:], strict=True):
        css = " class='chosen'" if row["number"] == chosen["number"] else (" class='front'" if row["on_front"] else "")
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}tr.front{background:#eef6ee}tr.chosen{background:#cfe8cf;font-weight:bold}"
             "img{max-width:100%}")
    title = f"edgetune tune: study {config.study}"
    summary = (f"{len(rows)} trials ({config.mode} mode, {config.objective} of the int8 model on the validation "
               f"split against its batch-1 p50 on this CPU). Chosen: trial {chosen['number']}, {reason}. "
               "Front rows are shaded; the chosen one is bold.")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
            f"<img alt='validation metric against p50 latency' src='data:image/png;base64,{image}'>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<h2>Search space</h2><pre>{html.escape(json.dumps(_space(config), indent=2))}</pre></body></html>\n")
    write_text_atomic(path, page)
    return path


def _space(config: TuneConfig) -> dict:
    from dataclasses import asdict

    return {name: {key: value for key, value in asdict(parameter).items() if value is not None}
            for name, parameter in config.space.items()}
