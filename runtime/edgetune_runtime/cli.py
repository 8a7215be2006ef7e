"""`edgetune-runtime`: the on-device command line (predict, verify and bench arrive with the bundle loader)."""

from __future__ import annotations

import json
import sys

import click

from edgetune_runtime import BUNDLE_FORMAT_VERSION, __version__
from edgetune_runtime.device import describe_machine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetune-runtime")
def main() -> None:
    """Run edgetune model bundles on this device."""


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.argument("texts", nargs=-1, required=True)
@click.option("--top-k", type=int, default=1, show_default=True)
def predict(bundle_path: str, texts: tuple[str, ...], top_k: int) -> None:
    """Print the top-k labels with probabilities for each TEXT, one JSON line per text."""

    bundle = _load(bundle_path)
    for text, predictions in zip(texts, bundle.predict(list(texts), top_k=top_k), strict=True):
        click.echo(json.dumps({"text": text, "predictions": [
            {"label": p.label, "probability": round(p.probability, 6)} for p in predictions]}, ensure_ascii=False))


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
def verify(bundle_path: str) -> None:
    """Check every file's sha256 and run the golden examples; exit 1 on any mismatch."""
    bundle = _load(bundle_path)
    check = bundle.verify()
    if check.passed:
        click.echo(f"ok: {len(bundle.manifest['files'])} files match their sha256, "
                   f"{check.checked} golden examples reproduce on this device")
        return
    for mismatch in check.mismatches:
        click.echo(f"mismatch: {json.dumps(mismatch, ensure_ascii=False)}", err=True)
    click.echo(f"error: {len(check.mismatches)} of {check.checked} golden examples differ on this device", err=True)
    sys.exit(1)


def _load(bundle_path: str):
    from edgetune_runtime.bundle import Bundle
    from edgetune_runtime.errors import BundleError

    try:
        return Bundle.load(bundle_path)
    except BundleError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)


@main.command()
def device() -> None:
    """Print what this device is (CPU, cores, ISA flags) as JSON, as bench results record it."""
    import onnxruntime

    info = describe_machine()
    info["onnxruntime"] = onnxruntime.__version__
    info["execution_providers"] = onnxruntime.get_available_providers()
    info["bundle_format_version"] = BUNDLE_FORMAT_VERSION
    click.echo(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
