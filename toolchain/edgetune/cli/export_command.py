"""`edgetune export`, `edgetune quantize` and `edgetune bundle`: from a fine-tuned model to a shippable bundle."""

from __future__ import annotations

import click

from edgetune.bundle.config import BundleConfig
from edgetune.export.config import ExportConfig
from edgetune.quantize.config import QuantizeConfig
from edgetune.quantize.variants import DEFAULT_VARIANTS, VARIANTS

_EXPORT = ExportConfig()
_QUANTIZE = QuantizeConfig()
_BUNDLE = BundleConfig()


@click.command("export")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--opset", type=int, default=_EXPORT.opset, show_default=True)
@click.option("--texts", "texts_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Held-out texts for the parity gate. Default: the validation split MODEL_DIR was trained with.")
@click.option("--parity-texts", type=int, default=_EXPORT.parity_texts, show_default=True,
              help="How many held-out texts to compare.")
@click.option("--max-abs-diff", type=float, default=_EXPORT.max_abs_diff, show_default=True,
              help="Largest allowed |logit difference| against PyTorch; argmax must also agree on every text.")
@click.option("--optimize/--no-optimize", default=_EXPORT.optimize, show_default=True,
              help="Fuse attention, GELU and embeddings with ONNX Runtime's transformer optimiser.")
@click.option("--prune-to-first-token/--no-prune-to-first-token", default=_EXPORT.prune_to_first_token,
              show_default=True, help="With --optimize: run the last layer only for the first token, the one a "
              "classifier reads (same logits, gated on parity; about a sixth less work for a 6-layer model).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def export_command(model_dir: str, output: str, texts_file: str | None, force: bool, **options) -> None:
    """Export MODEL_DIR (from `edgetune finetune`) to ONNX in OUTPUT, gated on parity with PyTorch.

    Batch and sequence axes stay dynamic. Logits are compared with PyTorch on real held-out text;
    the export fails (exit 2, nothing written) unless every argmax agrees and the largest difference
    is within --max-abs-diff. The optimised (and pruned) graph must pass the same gate, or the next
    simpler graph that does is kept.
    """
    from edgetune.export.onnx_export import export_onnx

    result = export_onnx(model_dir, output, ExportConfig(**options), texts_file=texts_file, force=force)
    click.echo(f"parity: {result.parity.describe()}")
    fusions = ", ".join(f"{name} x{count}" for name, count in result.fusions.items()) or "none"
    click.echo(f"fusions: {fusions}; {sum(result.op_counts.values())} nodes: "
               + ", ".join(f"{op} {n}" for op, n in sorted(result.op_counts.items(), key=lambda kv: -kv[1])))
    click.echo(f"written to {result.output_dir}")


def _list_variants(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, spec in VARIANTS.items():
        click.echo(f"{name:<28}{spec.description}")
    ctx.exit()


@click.command("quantize")
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help=f"Variant to try (repeatable). Default: {', '.join(DEFAULT_VARIANTS)}. See --list.")
@click.option("--list", "list_variants", is_flag=True, is_eager=True, expose_value=False, callback=_list_variants,
              help="List the variants (including the avx512_vnni, avx2 and arm64 presets) and exit.")
@click.option("--auto", is_flag=True, help="Try every variant, rescue over-budget int8 ones by keeping sensitive "
              "nodes in float, and keep the fastest inside the budget.")
@click.option("--max-accuracy-drop", type=float, default=_QUANTIZE.max_accuracy_drop, show_default=True,
              help="Accuracy points a variant may lose against fp32 on the validation split.")
@click.option("--calibration-samples", type=int, default=_QUANTIZE.calibration_samples, show_default=True)
@click.option("--latency-texts", type=int, default=_QUANTIZE.latency_texts, show_default=True)
@click.option("--threads", type=int, default=_QUANTIZE.threads, show_default=True,
              help="ONNX Runtime threads while timing (batch 1).")
@click.option("--keep", default=None, help="Write this variant instead of the fastest one inside the budget.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def quantize_command(export_dir: str, output: str, variants: tuple[str, ...], auto: bool, force: bool,
                     **options) -> None:
    """Build quantised variants of EXPORT_DIR, evaluate each, and write the chosen one to OUTPUT.

    Every variant is measured on the validation split: accuracy, macro-F1, per-class F1 change
    against fp32 (classes losing over 2 points are listed), size and batch-1 latency. Variants
    over --max-accuracy-drop, or slower than fp32 on this CPU, are reported and never chosen.
    """
    from edgetune.quantize.run import quantize

    chosen_variants = tuple(VARIANTS) if auto and not variants else (variants or DEFAULT_VARIANTS)
    report = quantize(export_dir, output, QuantizeConfig(variants=chosen_variants, auto=auto, **options),
                      force=force)
    click.echo(f"kept {report['chosen']}: {report['reason']}")
    if report["failed"]:
        click.echo("could not build: " + "; ".join(f"{k} ({v[:80]})" for k, v in report["failed"].items()))
    click.echo(f"written to {output} (full table in quantize_report.json)")


@click.command("bundle")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--golden-examples", type=int, default=_BUNDLE.golden_examples, show_default=True)
@click.option("--golden-tolerance", type=float, default=_BUNDLE.golden_tolerance, show_default=True)
@click.option("--ort/--no-ort", "ort_format", default=_BUNDLE.ort_format, show_default=True,
              help="Also ship model.ort + required_operators.config for ONNX Runtime mobile/minimal builds.")
@click.option("--zip/--no-zip", "zip", default=_BUNDLE.zip, show_default=True,
              help="Also write OUTPUT.zip.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def bundle_command(model_dir: str, output: str, force: bool, **options) -> None:
    """Write MODEL_DIR (from export or quantize) as a self-verifying on-device bundle in OUTPUT.

    The bundle holds model.onnx, tokenizer.json, labels, golden examples with their expected
    outputs, a README.md model card and a sealed manifest.json with every file's sha256.
    """
    from edgetune.bundle.build import build_bundle

    result = build_bundle(model_dir, output, BundleConfig(**options), force=force)
    click.echo(f"bundle written to {result.directory}" + (f" and {result.zip_path}" if result.zip_path else ""))
