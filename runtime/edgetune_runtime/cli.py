"""`edgetune-runtime`: the on-device command line: predict, generate, chat, verify, bench and device."""

from __future__ import annotations

import errno
import json
import sys

import click

from edgetune_runtime import BUNDLE_FORMAT_VERSION, __version__
from edgetune_runtime.device import describe_machine


class _UserErrorsAsOneLine(click.Group):
    """A bad bundle or input file is one `error:` line and exit status 2; bugs keep their traceback."""

    def invoke(self, ctx: click.Context):
        from edgetune_runtime.errors import BundleError, InputError

        try:
            return super().invoke(ctx)
        except (BundleError, InputError) as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except OSError as error:
            # An output path that cannot be created, a read-only or full disk: the user's to fix.
            path = error.filename2 or error.filename
            if error.errno not in _USER_ERRNOS or not path:
                raise
            click.echo(f"error: cannot write or read {path}: {error.strerror}; check the path, its permissions "
                       "and the free space", err=True)
            sys.exit(2)


_USER_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG,
                errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@click.group(cls=_UserErrorsAsOneLine, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetune-runtime")
def main() -> None:
    """Run edgetune model bundles on this device."""


def _session_options(command):
    """--threads, --inter-op-threads and --provider, shared by the commands that load a bundle."""
    command = click.option("--provider", "providers", multiple=True, metavar="NAME",
                           help="ONNX Runtime execution provider (repeatable, in order of preference). "
                                "Default: CPUExecutionProvider. `edgetune-runtime device` lists this build's.")(command)
    command = click.option("--inter-op-threads", type=click.IntRange(min=0), default=0, show_default=True,
                           help="Threads running independent graph nodes (0: ONNX Runtime chooses).")(command)
    return command


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help="Predict every row of a CSV, TSV, JSONL or .txt file (streamed; constant memory).")
@click.option("--text-column", default=None, help="Column of --input holding the text (found by name when left out).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON lines here (atomically) instead of to stdout.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="ONNX Runtime intra-op threads (0: one per physical core).")
@_session_options
def predict(bundle_path: str, texts: tuple[str, ...], input_path: str | None, text_column: str | None,
            output_path: str | None, top_k: int, batch_size: int, threads: int, inter_op_threads: int,
            providers: tuple[str, ...]) -> None:
    """Print the top-k labels with probabilities, one JSON line per TEXT or per row of --input."""
    from edgetune_runtime.bundle import ClassificationBundle
    from edgetune_runtime.errors import InputError

    if bool(texts) == bool(input_path):
        raise InputError("give either TEXT arguments or --input FILE (not both, not neither)")
    if (text_column or output_path) and not input_path:
        raise InputError("--text-column and --output go with --input FILE")
    # Labels are classification's: a bundle of another task is refused in one line, after its checks.
    bundle = ClassificationBundle.load(bundle_path, intra_op_threads=threads, inter_op_threads=inter_op_threads,
                                       providers=providers or None)
    if input_path:
        from edgetune_runtime.file_predict import predict_file

        result = predict_file(bundle, input_path, output_path, text_column=text_column, top_k=top_k,
                              batch_size=batch_size)
        if result.output is not None:
            click.echo(f"{result.rows} rows predicted, written to {result.output}", err=True)
        return
    for text, predictions in zip(texts, bundle.predict(list(texts), top_k=min(top_k, len(bundle.labels)),
                                                       batch_size=batch_size), strict=True):
        click.echo(json.dumps({"text": text, "predictions": [
            {"label": p.label, "probability": round(p.probability, 6)} for p in predictions]}, ensure_ascii=False))


def _generation_options(command):
    """Answer length, sampling, stop strings and truncation: shared by generate and chat."""
    for option in reversed((
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
                     help="Longest answer in tokens. Default: the bundle's."),
        click.option("--temperature", type=click.FloatRange(min=0), default=None,
                     help="0: greedy. Default: the bundle's sampling settings (greedy unless the model samples)."),
        click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                     help="Sample from the most probable tokens holding this much probability. Default: the bundle's."),
        click.option("--top-k", type=click.IntRange(min=0), default=None,
                     help="Sample from this many most probable tokens (0: all). Default: the bundle's."),
        click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Above 1 discourages repeating tokens already in the conversation. Default: the bundle's."),
        click.option("--seed", type=int, default=None, help="Seed for sampling, so a run can be repeated."),
        click.option("--stop", "stop", multiple=True, metavar="TEXT",
                     help="End the answer before this text (repeatable), besides the bundle's stop strings."),
        click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                     help="ONNX Runtime intra-op threads (0: one per physical core)."),
        _engine_option,
    )):
        command = option(command)
    return _session_options(command)


_engine_option = click.option(
    "--engine", type=click.Choice(["auto", "onnxruntime-genai", "onnxruntime"]), default="auto", show_default=True,
    help="What decodes: onnxruntime-genai's generator (pip install 'edgetune-runtime[chat]'), the plain onnxruntime "
         "loop, or auto (the first where it is installed and runs on the CPU provider).")


def _load_generation_bundle(bundle_path: str, threads: int, inter_op_threads: int, providers: tuple[str, ...],
                            engine: str = "auto"):
    from edgetune_runtime.tasks.generation.bundle import GenerationBundle

    # A bundle of another task is refused in one line, after its checks.
    return GenerationBundle.load(bundle_path, intra_op_threads=threads, inter_op_threads=inter_op_threads,
                                 providers=providers or None, engine=engine)


def _generation_settings(options: dict) -> dict:
    return {"max_new_tokens": options["max_new_tokens"], "temperature": options["temperature"],
            "top_p": options["top_p"], "top_k": options["top_k"], "repetition_penalty": options["repetition_penalty"],
            "seed": options["seed"], "stop": list(options["stop"]) or None}


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.argument("prompts", nargs=-1)
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help="Answer every line of a JSONL file ({\"prompt\": ...} or {\"messages\": [...]}) or a .txt "
                   "file (one prompt per line); streamed, constant memory.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON lines here (atomically) instead of to stdout.")
@click.option("--truncate", is_flag=True,
              help="Cut prompts too long for the context from the front (the system turn is kept) instead of refusing.")
@_generation_options
def generate(bundle_path: str, prompts: tuple[str, ...], input_path: str | None, output_path: str | None,
             truncate: bool, threads: int, inter_op_threads: int, providers: tuple[str, ...], engine: str,
             **options) -> None:
    """Answer each PROMPT, or every row of --input, with a text-generation bundle: one JSON line each."""
    from edgetune_runtime.errors import InputError

    if bool(prompts) == bool(input_path):
        raise InputError("give either PROMPT arguments or --input FILE (not both, not neither)")
    if output_path and not input_path:
        raise InputError("--output goes with --input FILE")
    bundle = _load_generation_bundle(bundle_path, threads, inter_op_threads, providers, engine)
    settings = _generation_settings(options) | {"truncate": truncate}
    if input_path:
        from edgetune_runtime.tasks.generation.prompts_file import generate_file

        result = generate_file(bundle, input_path, output_path, **settings)
        if result.output is not None:
            click.echo(f"{result.rows} prompts answered, written to {result.output}", err=True)
        return
    for prompt in prompts:
        answer = bundle.generate(prompt, **settings)
        click.echo(json.dumps({"prompt": prompt, "text": answer.text, "finish_reason": answer.finish_reason,
                               "new_tokens": len(answer.token_ids), "first_token_ms": answer.first_token_ms,
                               "decode_tokens_per_s": answer.decode_tokens_per_s}, ensure_ascii=False))


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.option("--system", default=None, help="System prompt to start with. Default: the bundle's.")
@_generation_options
def chat(bundle_path: str, system: str | None, threads: int, inter_op_threads: int, providers: tuple[str, ...],
         engine: str, **options) -> None:
    """Chat with a text-generation bundle in this terminal; answers stream as they are decoded.

    /reset starts over, /system TEXT sets the system prompt, /quit (or Ctrl-D) leaves; Ctrl-C stops an answer.
    """
    from edgetune_runtime.tasks.generation.terminal_chat import run_chat

    bundle = _load_generation_bundle(bundle_path, threads, inter_op_threads, providers, engine)
    run_chat(bundle, sys.stdin, sys.stdout, system, **_generation_settings(options))


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="ONNX Runtime intra-op threads (0: one per physical core).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the outcome as JSON here (device, tolerance, every mismatch), written atomically.")
@_session_options
def verify(bundle_path: str, threads: int, inter_op_threads: int, providers: tuple[str, ...],
           output_path: str | None) -> None:
    """Check every file's sha256 and run the golden examples; exit 1 on any mismatch.

    Warns (without failing) on a CPU outside the targets the bundle records as verified (avx512-vnni,
    avx2, arm64): ONNX Runtime's int8 kernels differ between them.
    """
    from edgetune_runtime.bundle import Bundle
    from edgetune_runtime.targets import unverified_target_warning

    bundle = Bundle.load(bundle_path, intra_op_threads=threads, inter_op_threads=inter_op_threads,
                         providers=providers or None)
    machine = describe_machine()
    warning = unverified_target_warning(bundle.manifest, machine)
    if warning:
        click.echo(warning, err=True)
    check = bundle.verify()
    if output_path:
        from edgetune_runtime.atomic_write import write_json_atomic
        from edgetune_runtime.bench import describe_device
        from edgetune_runtime.targets import cpu_target

        write_json_atomic(output_path, {
            "bundle": bundle_path, "model_sha256": bundle.manifest["files"][bundle.manifest["model"]],
            # The bench's device record: the machine plus onnxruntime's and the runtime's versions.
            "device": describe_device(bundle), "target": cpu_target(machine),
            "verified_targets": bundle.manifest.get("verified_targets"),
            "golden_tolerance": bundle.manifest.get("golden_tolerance"), "checked": check.checked,
            "passed": check.passed, "mismatches": check.mismatches, "command": ["edgetune-runtime", *sys.argv[1:]]})
    if check.passed:
        click.echo(f"ok: {len(bundle.manifest['files'])} files match their sha256, "
                   f"{check.checked} golden examples reproduce on this device")
        return
    for mismatch in check.mismatches:
        click.echo(f"mismatch: {json.dumps(mismatch, ensure_ascii=False)}", err=True)
    click.echo(f"error: {len(check.mismatches)} of {check.checked} golden examples differ on this device", err=True)
    sys.exit(1)


def _numbers(option: str):
    def parse(_ctx, _param, value: str | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected whole numbers separated by commas, e.g. 1,2",
                                     param_hint=option) from None
    return parse


@main.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True))
@click.option("--data", default=None, type=click.Path(dir_okay=False),
              help="Classification: labelled texts (CSV, TSV or JSONL) to time and score on (required). Generation: "
                   "prompts (JSONL with messages or a prompt column, CSV/TSV, .txt), optionally with reference "
                   "answers; default: the bundle's golden prompts.")
@click.option("--text-column", default=None, help="Classification: column holding the text (found by name when left "
                                                  "out).")
@click.option("--label-column", default=None, help="Classification: column holding the label (found by name when "
                                                   "left out).")
@click.option("--prompt-column", default=None, help="Generation: column holding the prompt (found by name: prompt, "
                                                    "instruction, text, ...).")
@click.option("--reference-column", default=None, help="Generation: column holding the reference answer, for "
                                                       "perplexity and ROUGE-L (found by name: response, ...).")
@click.option("--intent-column", default=None, help="Generation: column holding each prompt's intent label, for intent "
                                                    "fidelity with --judge (found by name: intent, label, category).")
@click.option("--judge", type=click.Path(exists=True), default=None,
              help="Generation: a classification bundle that names the intent an answer serves; with intent labels "
                   "in --data, reports intent fidelity (share of greedy answers judged to serve the prompt's intent).")
@click.option("--engine", type=click.Choice(["auto", "onnxruntime-genai", "onnxruntime"]), default=None,
              help="Generation: what decodes (default auto: onnxruntime-genai where installed, else the plain "
                   "onnxruntime loop); the bare loop the overhead is measured against is that engine's own.")
@click.option("--threads", default="1", show_default=True, callback=_numbers("--threads"),
              help="Intra-op thread counts to sweep, comma-separated (0: ONNX Runtime chooses).")
@click.option("--batch-sizes", default=None, callback=_numbers("--batch-sizes"),
              help="Classification: batch sizes to sweep, comma-separated (default 1,8,32); batch 1 is also timed "
                   "against raw onnxruntime.")
@click.option("--new-tokens", type=click.IntRange(min=2), default=None,
              help="Generation: tokens decoded per timed answer, every time (default 64).")
@click.option("--prompts-per-length", type=click.IntRange(min=1), default=None,
              help="Generation: prompts timed at each length, short/medium/long (default 5).")
@click.option("--long-prompt-tokens", type=click.IntRange(min=2), default=None,
              help="Generation: cap of the long prompts in tokens (default: the context beside --new-tokens).")
@click.option("--quality-rows", type=click.IntRange(min=0), default=None,
              help="Generation: rows with a reference answer scored for perplexity and ROUGE-L (default 32; 0 skips).")
@click.option("--pin-cores", default=None, callback=_numbers("--pin-cores"),
              help="Run on these cores only, e.g. 0 or 2,3 (Linux/Android).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N rows of --data (classification default: all; generation: 200).")
@click.option("--spread", is_flag=True, default=None,
              help="Classification: with --limit, take the N rows evenly spaced over --data instead of the first N "
                   "(a file sorted by label would otherwise give a few labels only).")
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="Untimed calls (classification, default 20) or rounds (generation, default 1) before each setting.")
@click.option("--cold-starts", type=click.IntRange(min=0), default=3, show_default=True,
              help="Fresh processes timed from start to first prediction or first token (0 skips).")
@click.option("--provider", "providers", multiple=True, metavar="NAME",
              help="ONNX Runtime execution provider (repeatable). Default: CPUExecutionProvider.")
@click.option("--name", default=None, help="What merged reports call this bundle (default: its folder or zip name).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON result here.")
@click.pass_context
def bench(ctx: click.Context, bundle_path: str, output_path: str | None, providers: tuple[str, ...],
          **options) -> None:
    """Measure speed, cold start, memory and quality of BUNDLE on this device, by the bundle's task.

    Classification: batch-1 latency beside raw onnxruntime, throughput per batch size, accuracy.
    Generation: time to first token of short/medium/long prompts, decode tokens/s and inter-token
    latency beside the engine's bare loop, perplexity and ROUGE-L of reference answers, intent
    fidelity with --judge.
    Prints a table; with -o, also writes one JSON result naming the device (CPU, cores, ISA flags,
    OS, onnxruntime version, execution provider), which `edgetune report` merges across devices.
    """
    from edgetune_runtime.tasks import task_bench

    task = _bundle_task(bundle_path)
    task_benchmark = task_bench(task)
    given = [name for name in options if ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                                                          click.core.ParameterSource.ENVIRONMENT)]
    config = _task_bench_config(task_benchmark.config, task, options | {"providers": providers or None}, given)
    result = task_benchmark.run(bundle_path, config, command=["edgetune-runtime", *sys.argv[1:]],
                                progress=lambda message: click.echo(message, err=True))
    click.echo(task_benchmark.format_table(result))
    if output_path:
        click.echo(f"written to {result.write(output_path)}", err=True)


def _bundle_task(bundle_path: str) -> str:
    """The manifest's task, read without loading the bundle: the task's bench loads and verifies it."""
    import zipfile
    from pathlib import Path

    from edgetune_runtime.json_limits import loads_bounded
    from edgetune_runtime.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES

    path = Path(bundle_path)
    try:
        if path.is_dir():
            with open(path / MANIFEST_FILE, "rb") as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
        else:
            with zipfile.ZipFile(path) as archive, archive.open(MANIFEST_FILE) as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
        task = loads_bounded(raw, str(path)).get("task")
        if isinstance(task, str):
            return task
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile):
        pass
    from edgetune_runtime.bundle import Bundle

    # Not readable as a bundle: loading it says why in one line (and, should it load, names its task).
    return Bundle.load(bundle_path, intra_op_threads=1).manifest["task"]


def _task_bench_config(config_class: type, task: str, options: dict, given: list[str]):
    """The task's bench config from the command's options: those it has, set or defaulted there; an option
    given that it lacks, or a required one missing, is refused in one line."""
    import dataclasses

    from edgetune_runtime.errors import InputError

    fields = {field.name: field for field in dataclasses.fields(config_class)}
    foreign = [name for name in given if name not in fields]
    if foreign:
        raise InputError(f"--{foreign[0].replace('_', '-')} does not apply to a {task} bundle; leave it out")
    missing = [name for name, field in fields.items() if field.default is dataclasses.MISSING
               and field.default_factory is dataclasses.MISSING and options.get(name) is None]
    if missing:
        flag = f"--{missing[0].replace('_', '-')}"
        raise InputError(f"{flag}: a {task} bundle's bench needs it; pass {flag} (see --help)")
    return config_class(**{name: value for name, value in options.items() if name in fields and value is not None})


@main.command()
def device() -> None:
    """Print what this device is (CPU, cores, ISA flags) as JSON, as bench results record it."""
    import onnxruntime

    info = describe_machine()
    info["onnxruntime"] = onnxruntime.__version__
    info["execution_providers"] = onnxruntime.get_available_providers()
    info["bundle_format_version"] = BUNDLE_FORMAT_VERSION
    click.echo(json.dumps(info, indent=2))


@main.command("trim-env")
@click.option("--check-bundle", type=click.Path(exists=True), default=None,
              help="After trimming, also verify this bundle's golden examples before deleting anything.")
@click.option("--dry-run", is_flag=True, help="List what would be removed and the space it takes; change nothing.")
def trim_env(check_bundle: str | None, dry_run: bool) -> None:
    """Shrink THIS environment to what an app runs (for device images).

    Removes numpy's tests and build tools, onnxruntime's quantisation/conversion tooling and its C API
    library (about a third of a runtime-only environment), after checking in a fresh interpreter that
    the runtime still works; if it does not, everything is put back. Refuses an environment holding the
    edgetune toolchain or anything else that depends on onnxruntime. Run the environment's own
    `edgetune-runtime`, e.g. `/opt/app/venv/bin/edgetune-runtime trim-env`.
    """
    from pathlib import Path

    from edgetune_runtime.trim_env import trim_environment

    report = trim_environment(check_bundle=Path(check_bundle) if check_bundle else None, dry_run=dry_run)
    for path in report.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    verb = "would take" if dry_run else "takes"
    click.echo(f"{report.site_packages}: environment {report.mb_before} MB, {verb} {report.mb_after} MB "
               f"({report.removed_mb} MB of tooling {'to remove' if dry_run else 'removed'})")


if __name__ == "__main__":
    main()
