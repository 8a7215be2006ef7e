"""The bundle's README.md: a model card people read before shipping it."""

from __future__ import annotations


def model_card(manifest: dict, variants: dict[str, dict] | None, summary: str, measured: list[str] | None = None,
               usage: list[str] | None = None) -> str:
    """`summary` is the task's line on what the model outputs (`Task.card_summary`); `measured` and `usage`
    replace the default "Measured" lines and Python example when the task gives its own."""
    metrics = manifest.get("metrics", {})
    provenance = manifest["provenance"]
    lines = [
        f"# {provenance.get('base_model', {}).get('name', 'model')} — {manifest['task']} bundle",
        "",
        f"{summary} Variant: `{manifest['tuned_for'].get('variant', 'fp32')}`, tuned on "
        f"{manifest['tuned_for'].get('cpu_model', 'unknown CPU')} ({manifest['tuned_for'].get('execution_provider')}).",
        "",
        "## Measured",
        "",
    ]
    if measured is not None:
        lines += measured
    elif variants:
        lines += ["| variant | accuracy | macro-F1 | worst class ΔF1 (pt) | MB | p50 ms | p90 ms |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in sorted(variants.items(), key=lambda item: item[1]["p50_ms"]):
            marker = " (this bundle)" if name == manifest["tuned_for"].get("variant") else ""
            lines.append(f"| {name}{marker} | {row['accuracy']:.2%} | {row['macro_f1']:.4f} | "
                         f"{row['worst_class_f1_change_points']:+.2f} | {row['size_mb']:.1f} | {row['p50_ms']:.3f} | "
                         f"{row['p90_ms']:.3f} |")
        lines += ["", "Accuracy on the validation split; latency at batch 1, one thread, on the CPU above."]
    elif metrics:
        lines += [f"- {key}: {value}" for key, value in metrics.items()]
    lines += [
        "",
        "## Provenance",
        "",
        f"- base model: {_base_model(provenance.get('base_model') or {})}",
        f"- data fingerprint: {provenance.get('data_fingerprint')}",
        f"- toolchain: edgetune {provenance.get('edgetune_version')}",
        f"- command: `{provenance.get('command')}`",
        "",
        "## Use",
        "",
        "```python",
        "from edgetune_runtime.bundle import Bundle",
        "bundle = Bundle.load('path/to/bundle')   # verifies every file's sha256",
        *(usage or ["print(bundle.predict(['I lost my card'], top_k=3))"]),
        "assert bundle.verify().passed             # golden examples reproduce on this device",
        "```",
        "",
    ]
    return "\n".join(lines)


def _base_model(base: dict) -> str:
    described = str(base.get("name", "unknown"))
    if base.get("source"):
        described += f" ({base['source']})"
    if base.get("weights_sha256"):
        described += f", weights sha256 {base['weights_sha256']}"
    return described
