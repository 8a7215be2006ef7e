"""`edgetune export`, `edgetune quantize` and `edgetune bundle`: from a fine-tuned model to a shippable bundle."""

from __future__ import annotations

import click

from edgetune.bundle.config import BundleConfig
from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.task_options import task_command, task_of_input_dir
from edgetune.export.config import ExportConfig
from edgetune.quantize.config import QuantizeConfig
from edgetune.quantize.variants import PRESETS, VARIANTS
from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.quantize_config import ChatQuantizeConfig

EXPORT_OPTIONS = ConfigOptions(ExportConfig)
QUANTIZE_OPTIONS = ConfigOptions(QuantizeConfig)
BUNDLE_OPTIONS = ConfigOptions(BundleConfig)
GENERATION_BUNDLE_OPTIONS = ConfigOptions(GenerationBundleConfig)
CHAT_EXPORT_OPTIONS = ConfigOptions(ChatExportConfig)
CHAT_QUANTIZE_OPTIONS = ConfigOptions(ChatQuantizeConfig)


@task_command("export", {"text-classification": [EXPORT_OPTIONS], "text-generation": [CHAT_EXPORT_OPTIONS]},
              infer_task=task_of_input_dir())
@click.argument("model")
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def export_command(task: str, model: str, output: str, force: bool, **options) -> None:
    """Export MODEL to ONNX in OUTPUT, gated on parity with PyTorch.

    MODEL is an `edgetune finetune` output, any local Hugging Face model directory, a packaged id
    or a hub id (see `edgetune models list`). A model edgetune did not train records no held-out
    data: pass --validation FILE. The task (and so the flags) is MODEL's: `--task chat --help`
    lists a chat model's.

    Classifiers: batch and sequence axes stay dynamic. Logits are compared with PyTorch on real
    held-out text; the export fails (exit 2, nothing written) unless every argmax agrees and the
    largest difference is within --max-abs-diff. The optimised (and pruned) graph must pass the same
    gate, or the next simpler graph that does is kept.

    Chat models: onnxruntime-genai's model builder writes a KV-cache decoder for --context-length
    tokens; its greedy tokens must equal PyTorch's on held-out prompts (a first difference is allowed
    only at a near-tie of PyTorch's two best logits), else nothing is written.
    """
    _EXPORTERS[task](model, output, force, options)


def _export_classifier(model: str, output: str, force: bool, options: dict) -> None:
    from edgetune.export.onnx_export import export_onnx

    config = EXPORT_OPTIONS.build(options)
    result = export_onnx(model, output, config, force=force)
    click.echo(f"parity: {result.parity.describe()}")
    fusions = ", ".join(f"{name} x{count}" for name, count in result.fusions.items()) or "none"
    click.echo(f"fusions: {fusions}; {sum(result.op_counts.values())} nodes: "
               + ", ".join(f"{op} {n}" for op, n in sorted(result.op_counts.items(), key=lambda kv: -kv[1])))
    click.echo(f"written to {result.output_dir}")


def _export_chat(model: str, output: str, force: bool, options: dict) -> None:
    from edgetune.tasks.text_generation.export import export_chat

    result = export_chat(model, output, CHAT_EXPORT_OPTIONS.build(options), force=force)
    click.echo(f"parity: {result.parity.describe()}")
    click.echo(f"{result.variant}: {result.metrics['size_mb']} MB, perplexity {result.metrics['perplexity']} on "
               f"{result.metrics['scored_conversations']} held-out answers; written to {result.output_dir}")


# One entry per task: the command's body is the same for all, the stage function is the task's.
_EXPORTERS = {"text-classification": _export_classifier, "text-generation": _export_chat}


def _list_variants(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    if ctx.meta.get("edgetune.task") == "text-generation":
        from edgetune.tasks.text_generation.variants import CHAT_VARIANTS

        for name, variant in CHAT_VARIANTS.items():
            click.echo(f"{name:<36}{variant.description}")
        ctx.exit()
    for name, spec in VARIANTS.items():
        click.echo(f"{name:<36}{spec.description}")
    for preset, variant in PRESETS.items():
        click.echo(f"{preset:<36}preset: builds exactly {variant} (resolves to it)")
    ctx.exit()


@task_command("quantize", {"text-classification": [QUANTIZE_OPTIONS], "text-generation": [CHAT_QUANTIZE_OPTIONS]},
              infer_task=task_of_input_dir())
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--list", "list_variants", is_flag=True, is_eager=True, expose_value=False, callback=_list_variants,
              help="List the task's variants (for classifiers also the presets avx512_vnni, arm64: names of the "
                   "variant they equal) and exit.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def quantize_command(task: str, export_dir: str, output: str, force: bool, **options) -> None:
    """Build quantised variants of EXPORT_DIR, evaluate each, and write the chosen one to OUTPUT.

    Classifiers: every variant is measured on held-out data (--validation, else the validation split
    recorded at fine-tuning): accuracy, macro-F1, per-class F1 change against fp32 (classes losing
    over 2 points are listed), size and batch-1 latency. Variants over --max-accuracy-drop, or slower
    than fp32 on this CPU, are reported and never chosen. EXPORT_DIR is an `edgetune export` output
    or any ONNX directory with model.onnx, config.json and tokenizer.json (such as `optimum-cli
    export onnx`'s).

    Chat models (EXPORT_DIR an fp32 chat export): each variant's perplexity of the held-out answers,
    next-token agreement with fp32, size, first-token ms and decode tokens/s (timed in turns with
    fp32); the fastest decoder within --max-quality-drop (perplexity increase over fp32, %) is kept.
    """
    _QUANTIZERS[task](export_dir, output, force, options)


def _quantize_classifier(export_dir: str, output: str, force: bool, options: dict) -> None:
    from edgetune.quantize.run import quantize

    report = quantize(export_dir, output, QUANTIZE_OPTIONS.build(options), force=force)
    click.echo(f"kept {report['chosen']}: {report['reason']}")
    if report["failed"]:
        click.echo("could not build: " + "; ".join(f"{k} ({v[:80]})" for k, v in report["failed"].items()))
    click.echo(f"written to {output} (full table in quantize_report.json)")


def _quantize_chat(export_dir: str, output: str, force: bool, options: dict) -> None:
    from edgetune.tasks.text_generation.quantize import VARIANTS_REPORT, format_variant_table, quantize_chat

    report = quantize_chat(export_dir, output, CHAT_QUANTIZE_OPTIONS.build(options), force=force)
    click.echo(format_variant_table(report["variants"], report["chosen"]))
    click.echo(f"kept {report['chosen']}: {report['reason']}")
    if report["failed"]:
        click.echo("could not build: " + "; ".join(f"{k} ({v[:120]})" for k, v in report["failed"].items()))
    click.echo(f"written to {output} (full table in {VARIANTS_REPORT})")


_QUANTIZERS = {"text-classification": _quantize_classifier, "text-generation": _quantize_chat}


@task_command("bundle", {"text-classification": [BUNDLE_OPTIONS], "text-generation": [GENERATION_BUNDLE_OPTIONS]},
              infer_task=task_of_input_dir())
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def bundle_command(task: str, model_dir: str, output: str, force: bool, **options) -> None:
    """Write MODEL_DIR (from export or quantize) as a self-verifying on-device bundle in OUTPUT.

    The bundle holds the model, its tokenizer, the task's settings (labels; a chat model's chat
    format and generation defaults), golden examples with their expected outputs, a README.md
    model card and a sealed manifest.json with every file's sha256.
    """
    from edgetune.bundle.build import build_bundle

    config_options = GENERATION_BUNDLE_OPTIONS if task == "text-generation" else BUNDLE_OPTIONS
    result = build_bundle(model_dir, output, config_options.build(options), force=force)
    click.echo(f"bundle written to {result.directory}" + (f" and {result.zip_path}" if result.zip_path else ""))
