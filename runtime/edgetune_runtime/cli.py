"""`edgetune-runtime`: the on-device command line (predict, verify and bench arrive with the bundle loader)."""

from __future__ import annotations

import json

import click

from edgetune_runtime import BUNDLE_FORMAT_VERSION, __version__
from edgetune_runtime.device import describe_machine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetune-runtime")
def main() -> None:
    """Run edgetune model bundles on this device."""


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
