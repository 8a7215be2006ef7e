"""`build_bundle`: an exported or quantised model directory in, a sealed on-device bundle out."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgetune import __version__
from edgetune.atomic import atomic_directory
from edgetune.bundle.card import model_card
from edgetune.bundle.config import BundleConfig
from edgetune.bundle.special_tokens import TOKENIZER_FILE
from edgetune.bundle.zip_path import check_bundle_output, zip_path_for
from edgetune.errors import EdgetuneError
from edgetune.export.artifact import MODEL_FILE, read_onnx_artifact
from edgetune.scratch import scratch_directory
from edgetune.stage_manifest import MANIFEST as STAGE_MANIFEST
from edgetune.tasks import Task
from edgetune_runtime.atomic_write import atomic_path
from edgetune_runtime.device import describe_machine
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import MANIFEST_FILE, BundleManifest
from edgetune_runtime.targets import cpu_target

GOLDEN_FILE = "golden.json"


@dataclass
class BundleResult:
    directory: Path
    zip_path: Path | None
    manifest: dict


def build_bundle(source_dir: str | Path, output_dir: str | Path, config: BundleConfig, *,
                 force: bool = False) -> BundleResult:
    """Write a bundle of `source_dir` to `output_dir`.

    `source_dir` is an `edgetune export` or `edgetune quantize` output (a classifier's, or a chat
    model's with genai_config.json), or any ONNX export with model.onnx, tokenizer.json and
    config.json (`optimum-cli export onnx`). The task's hooks (`edgetune.tasks`) add its files and
    manifest section; `config` is converted to the task's own settings (`Task.bundle_config`).
    Golden inputs come from `config.validation`, else from the validation split recorded at fine-tuning.
    """
    source_dir, output_dir = Path(source_dir), Path(output_dir)
    stage, task = read_onnx_artifact(source_dir, ("export", "quantize"),
                                     "not an `edgetune export` or `edgetune quantize` output")
    if not (source_dir / TOKENIZER_FILE).is_file():
        raise EdgetuneError(f"{source_dir}: no {TOKENIZER_FILE}; only fast (Rust) tokenizers can ship in a bundle")
    check_bundle_output(output_dir)
    zip_path = zip_path_for(output_dir)
    # A zip beside the output belongs to the bundle there: without --force it is refused like the directory,
    # with --force it is replaced (with --zip) or removed (without), never left to disagree with the new bundle.
    for existing in (output_dir, zip_path):
        if existing.exists() and not force:
            raise EdgetuneError(f"{existing} already exists; choose another output path or pass --force to replace it")

    config = task.bundle_config(config)
    golden_inputs = task.golden_inputs(stage, source_dir, config)
    variants = _variants_table(source_dir)

    with _set_aside_on_success(None if config.zip else zip_path) as set_aside, \
            atomic_directory(output_dir, overwrite=force) as staging:
        # copyfile, not copy2: the bundle's files take the umask's mode, not the source's.
        shutil.copyfile(source_dir / MODEL_FILE, staging / MODEL_FILE)
        graph_entries = task.postprocess_bundle_graph(staging / MODEL_FILE)
        shutil.copyfile(source_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        section = task.bundle_files(stage, source_dir, staging, config) | graph_entries
        if config.ort_format:
            _convert_to_ort(staging)
        manifest = _manifest(stage, task, section, source_dir, staging, config)
        _write_golden(staging, task, manifest.to_dict(), golden_inputs)
        manifest = manifest.replace(golden=GOLDEN_FILE)
        card_manifest = manifest.to_dict()
        (staging / "README.md").write_text(model_card(card_manifest, variants, task.card_summary(card_manifest),
                                                      task.card_measured(card_manifest, variants),
                                                      task.card_usage(card_manifest)), encoding="utf-8")
        manifest = manifest.replace(files={p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()})
        manifest = manifest.sealed()
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        if config.zip:
            write_bundle_zip(staging, zip_path, output_dir.name)
        else:
            set_aside()  # last, so that a failure above leaves the previous bundle and its zip together
    return BundleResult(output_dir, zip_path if config.zip else None, manifest)


@contextlib.contextmanager
def _set_aside_on_success(path: Path | None) -> Iterator[Callable[[], None]]:
    """Yield a function that moves `path` aside; it is deleted when the block succeeds, put back when it fails.

    The previous bundle's zip must go with the previous directory: it is moved aside just before the
    directory swap and restored if the swap does not happen.
    """
    aside = path.with_name(f".{path.name}.old-{os.getpid()}") if path is not None else None

    def set_aside() -> None:
        if path is not None and path.exists():
            path.replace(aside)

    try:
        yield set_aside
    except BaseException:
        if aside is not None and aside.exists() and not path.exists():
            aside.replace(path)
        raise
    if aside is not None:
        aside.unlink(missing_ok=True)


def _manifest(stage: dict, task: Task, section: dict, source_dir: Path, staging: Path,
              config: BundleConfig) -> BundleManifest:
    from edgetune.export.onnx_export import graph_io

    machine = describe_machine()
    graph = graph_io(staging / MODEL_FILE)
    evaluation = stage.get("evaluation") or {}
    # A chat artifact names its model in `source_model` and keeps its data record and metrics at the top.
    source = stage.get("source") or {"data": stage.get("data"), "metrics": stage.get("metrics")}
    variant = stage.get("variant")
    measured = (*task.bench_metrics, "p50_ms", "p90_ms", "size_mb")
    return BundleManifest(
        task=task.name,
        model=MODEL_FILE,
        model_ort="model.ort" if (staging / "model.ort").is_file() else None,
        tokenizer=TOKENIZER_FILE,
        inputs=graph["inputs"],
        outputs=graph["outputs"],
        opset=graph["opset"],
        section=section,
        metrics={key: evaluation[key] for key in measured if key in evaluation}
        | ({"test": evaluation["test"]} if "test" in evaluation else {}) or (source.get("metrics") or {}),
        tuned_for={"variant": variant.get("name", "fp32") if isinstance(variant, dict) else variant or "fp32",
                   "execution_provider": "CPUExecutionProvider", "cpu_model": machine["cpu_model"],
                   "architecture": machine["architecture"], "isa_flags": machine["isa_flags"]},
        provenance={
            "base_model": source.get("base_model") or stage.get("base_model")
            or {"name": stage.get("source_model") or source.get("path")},
            "data_fingerprint": (source.get("data") or {}).get("fingerprint"),
            "source_manifest_sha256": sha256_file(source_dir / STAGE_MANIFEST)
            if (source_dir / STAGE_MANIFEST).is_file() else None,
            "edgetune_version": __version__,
            "command": " ".join(sys.argv),
        },
        # Session settings the toolchain measured this graph with; the runtime applies them as data.
        session=stage.get("session", {}),
        golden_tolerance=config.golden_tolerance,
        # The golden outputs are computed on this machine, so its target is verified by construction;
        # others are added by scripts/emulate.sh (its record option) once they reproduce them (bundle/targets.py).
        verified_targets=[cpu_target(machine)],
    )


def _write_golden(staging: Path, task: Task, manifest: dict, inputs: list) -> None:
    """Expected outputs computed by the runtime itself, with the class it runs this task's bundles with."""
    from edgetune_runtime.tasks import bundle_class

    runtime_bundle = bundle_class(task.name)(staging, manifest)
    golden = task.golden_examples(runtime_bundle, inputs)
    (staging / GOLDEN_FILE).write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _variants_table(source_dir: Path) -> dict | None:
    # quantize_report.json from a classifier's quantize, variants.json from a chat model's.
    for report in (source_dir / "quantize_report.json", source_dir / "variants.json"):
        if report.is_file():
            return json.loads(report.read_text()).get("variants")
    return None


def _convert_to_ort(staging: Path) -> None:
    """ONNX Runtime's own converter: model.ort plus the operator list for a minimal build."""
    with scratch_directory("ort") as scratch_dir:
        shutil.copy2(staging / MODEL_FILE, scratch_dir / MODEL_FILE)
        result = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
                                 str(scratch_dir / MODEL_FILE), "--output_dir", str(scratch_dir)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgetuneError(f"ONNX Runtime could not convert the model to ORT format: "
                                f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}")
        ort_files = sorted(scratch_dir.glob("*.ort"))
        if not ort_files:
            raise EdgetuneError("ONNX Runtime's ORT converter produced no .ort file")
        shutil.copyfile(ort_files[0], staging / "model.ort")
        configs = sorted(scratch_dir.glob("*required_operators*.config"))
        if configs:
            shutil.copyfile(configs[0], staging / "required_operators.config")


def write_bundle_zip(staging: Path, zip_path: Path, folder: str) -> None:
    import zipfile

    with atomic_path(zip_path) as temporary, \
            zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.iterdir()):
            archive.write(path, f"{folder}/{path.name}")
