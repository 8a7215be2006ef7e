"""`edgetune`: the entry point. Imports only Click and light config modules so --help is instant."""

from __future__ import annotations

import logging
import sys

import click

from edgetune import __version__
from edgetune.errors import EdgetuneError


class _UserErrorsAsOneLine(click.Group):
    """Turns user mistakes into one `error:` line and exit code 2; real bugs keep their traceback."""

    def invoke(self, ctx: click.Context):
        from edgetune.interrupts import raise_if_terminated, termination_as_interrupt

        try:
            # SIGTERM/SIGHUP unwind like Ctrl-C, so staging and scratch directories are removed on the way out.
            with termination_as_interrupt():
                try:
                    return super().invoke(ctx)
                except Exception:
                    raise_if_terminated()  # a signal that surfaced as another exception is still an interrupt
                    raise
        except EdgetuneError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as interrupt:
            click.echo("interrupted: nothing was written to the output path", err=True)
            sys.exit(128 + getattr(interrupt, "signal_number", 2))  # the shell's convention: 128 + signal
        except Exception as error:
            # A full disk, a quota, a file-size limit or an unusable path is the user's to fix,
            # even when a library wrapped it.
            from edgetune.storage_errors import path_failure, storage_failure

            reason = storage_failure(error) or path_failure(error)
            if reason is None:
                raise
            click.echo(f"error: {reason} (nothing was written to the output path)", err=True)
            sys.exit(2)


@click.group(cls=_UserErrorsAsOneLine, context_settings={"help_option_names": ["-h", "--help"],
                                                         "max_content_width": 100})
@click.version_option(__version__, prog_name="edgetune")
@click.option("-v", "--verbose", is_flag=True, help="Show library warnings and debug logs.")
def cli(verbose: bool) -> None:
    """Fine-tune, distil, export, quantise and bundle transformers for on-device inference.

    \b
    Typical path:
      edgetune models pull sentence-transformers/all-MiniLM-L6-v2
      edgetune data inspect --train train.csv --test test.csv
      edgetune finetune --train train.csv --test test.csv -o runs/minilm
      edgetune export runs/minilm runs/minilm-onnx
      edgetune quantize runs/minilm-onnx runs/minilm-int8 --auto
      edgetune bundle runs/minilm-int8 runs/minilm-bundle --zip
    """
    # edgetune's own progress goes to stderr at INFO; other libraries speak only when something is
    # wrong (ONNX Runtime's quantiser alone logs a line per tensor at INFO).
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("edgetune").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        _quiet_libraries()


def _quiet_libraries() -> None:
    # Expected notices ("classifier weights newly initialised", tokenizer fork warnings) drown the
    # progress bar; --verbose brings them back.
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for noisy in ("transformers", "datasets", "accelerate", "peft", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _register_commands() -> None:
    from edgetune.cli.data_command import data
    from edgetune.cli.distill_command import distill_command
    from edgetune.cli.evaluate_command import evaluate_command
    from edgetune.cli.export_command import bundle_command, export_command, quantize_command
    from edgetune.cli.finetune_command import finetune_command
    from edgetune.cli.models_command import models
    from edgetune.cli.report_command import report_command
    from edgetune.cli.run_command import run_command, validate_command
    from edgetune.cli.tune_command import tune_command

    cli.add_command(models)
    cli.add_command(data)
    cli.add_command(finetune_command)
    cli.add_command(distill_command)
    cli.add_command(export_command)
    cli.add_command(quantize_command)
    cli.add_command(bundle_command)
    cli.add_command(evaluate_command)
    cli.add_command(validate_command)
    cli.add_command(run_command)
    cli.add_command(report_command)
    cli.add_command(tune_command)


_register_commands()


def main() -> None:
    cli(prog_name="edgetune")
