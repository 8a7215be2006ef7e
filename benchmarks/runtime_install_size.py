"""Benchmark: what the runtime takes on a device's disk, for classification only and with the chat extra.

Device installs as the README gives them, built here from the runtime's wheel with the same versions as
this environment: a virtual environment without pip, the runtime and its four dependencies (`--no-deps`),
then `edgetune-runtime trim-env --check-bundle` (which verifies a bundle in the trimmed environment before
deleting anything). With the chat extra, onnxruntime-genai is added (`edgetune-runtime[chat]`): its wheel
ships its two libraries with their debug symbols, so the install is measured as pip leaves it and after
`strip --strip-debug` of those libraries (binutils on the machine that builds the app image). Each
environment must still verify its bundle, and the chat ones answer a prompt with onnxruntime-genai.

    nice -n 10 python benchmarks/runtime_install_size.py --classification-bundle CLS --chat-bundle CHAT
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgetune_runtime.trim_env import disk_mb  # noqa: E402
from environment import run_context  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNTIME_DEPENDENCIES = ("onnxruntime", "numpy", "tokenizers", "click")
CHAT_EXTRA = ("onnxruntime-genai",)
CHECK = ("import json, sys; from edgetune_runtime.bundle import Bundle\n"
         "bundle = Bundle.load(sys.argv[1], intra_op_threads=1)\n"
         "passed = bundle.verify().passed\n"
         "engine = getattr(bundle, 'engine', None)\n"
         "if engine: bundle.generate('Where is my order?', max_new_tokens=4)\n"
         "print(json.dumps({'verified': passed, 'engine': engine}))\n")


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise click.ClickException(f"failed: {' '.join(map(str, command))}\n{done.stderr[-3000:]}")
    return done


def _check(environment: Path, bundle: Path) -> dict:
    return json.loads(_run([environment / "bin" / "python", "-c", CHECK, bundle]).stdout.strip().splitlines()[-1])


def _device_install(environment: Path, pins: list[str], wheel: Path) -> None:
    """The README's device install: no pip in the environment, only what the runtime imports."""
    _run([sys.executable, "-m", "venv", "--without-pip", environment])
    _run([sys.executable, "-m", "pip", "--python", environment / "bin" / "python", "install", "-q",
          "--disable-pip-version-check", "--no-deps", *pins, wheel])


def _measure(environment: Path, bundle: Path, trim: bool) -> dict:
    figures = {"mb": disk_mb(environment)}
    if trim:
        _run([environment / "bin" / "edgetune-runtime", "trim-env", "--check-bundle", bundle])
        figures["trimmed_mb"] = disk_mb(environment)
    figures["check"] = _check(environment, bundle)
    site_packages = next(environment.glob("lib/python*/site-packages"))
    largest = sorted(((disk_mb(path), path.name) for path in site_packages.iterdir() if path.is_dir()),
                     reverse=True)[:6]
    figures["largest_packages_mb"] = {name: size for size, name in largest}
    return figures


@click.command()
@click.option("--classification-bundle", type=click.Path(exists=True, path_type=Path), required=True,
              help="A classification bundle the classification-only install must verify.")
@click.option("--chat-bundle", type=click.Path(exists=True, path_type=Path), required=True,
              help="A chat bundle the install with the chat extra must verify and answer with.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO / "runs" / "runtime-install-size", show_default=True)
@click.option("--name", default="runtime_install_size", show_default=True, help="Result file under benchmarks/results.")
def main(classification_bundle: Path, chat_bundle: Path, work_dir: Path, name: str) -> None:
    from edgetune_runtime.atomic_write import write_json_atomic

    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    source = shutil.copytree(REPO / "runtime", work_dir / "source",
                             ignore=shutil.ignore_patterns("*.egg-info", "build"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w",
          work_dir / "wheels"])
    wheel = next((work_dir / "wheels").glob("edgetune_runtime-*.whl"))
    pins = [f"{package}=={importlib.metadata.version(package)}" for package in RUNTIME_DEPENDENCIES]
    chat_pins = [f"{package}=={importlib.metadata.version(package)}" for package in CHAT_EXTRA]
    results = {}

    classification = work_dir / "classification"
    _device_install(classification, pins, wheel)
    results["classification_only"] = _measure(classification, classification_bundle, trim=True) | {
        "packages": [*pins, wheel.name]}

    chat = work_dir / "chat"
    _device_install(chat, [*pins, *chat_pins], wheel)
    results["with_chat_extra"] = _measure(chat, chat_bundle, trim=True) | {"packages": [*pins, *chat_pins, wheel.name]}
    strip = shutil.which("strip")
    if strip:
        libraries = sorted(next(chat.glob("lib/python*/site-packages")).glob("onnxruntime_genai/*.so"))
        for library in libraries:
            _run([strip, "--strip-debug", library])
        results["with_chat_extra"] |= {"stripped_mb": disk_mb(chat), "stripped_check": _check(chat, chat_bundle),
                                       "strip_command": f"strip --strip-debug {' '.join(p.name for p in libraries)}"}
    result = {"benchmark": name, "method": __doc__.split("\n\n")[1].replace("\n", " "), "results": results,
              "bundles": {"classification": str(classification_bundle.resolve()), "chat": str(chat_bundle.resolve())},
              } | run_context()
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, result)
    for key, figures in results.items():
        extra = f", stripped {figures['stripped_mb']} MB" if "stripped_mb" in figures else ""
        click.echo(f"{key}: {figures['mb']} MB installed, {figures.get('trimmed_mb')} MB trimmed{extra}; "
                   f"check {figures['check']}")
    click.echo(f"wrote {path.relative_to(REPO)}", err=True)


if __name__ == "__main__":
    main()
