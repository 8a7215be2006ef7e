"""`build_bundle`: an exported or quantised model directory in, a sealed on-device bundle out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgetune import __version__
from edgetune.atomic import atomic_directory
from edgetune.bundle.card import model_card
from edgetune.bundle.config import BundleConfig
from edgetune.bundle.probabilities import append_softmax
from edgetune.errors import EdgetuneError
from edgetune.export.heldout import heldout_split
from edgetune.stage_manifest import MANIFEST as STAGE_MANIFEST
from edgetune.stage_manifest import read_stage_manifest
from edgetune_runtime.device import describe_machine
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import MANIFEST_FILE, BundleManifest

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
GOLDEN_FILE = "golden.json"
LABELS_FILE = "labels.json"


@dataclass
class BundleResult:
    directory: Path
    zip_path: Path | None
    manifest: dict


def build_bundle(source_dir: str | Path, output_dir: str | Path, config: BundleConfig, *,
                 force: bool = False) -> BundleResult:
    """Write a bundle of `source_dir` (from `edgetune export` or `edgetune quantize`) to `output_dir`."""
    source_dir, output_dir = Path(source_dir), Path(output_dir)
    stage = read_stage_manifest(source_dir)
    if stage.get("stage") not in ("export", "quantize") or not (source_dir / MODEL_FILE).is_file():
        raise EdgetuneError(f"{source_dir}: not an `edgetune export` or `edgetune quantize` output")
    if not (source_dir / TOKENIZER_FILE).is_file():
        raise EdgetuneError(f"{source_dir}: no {TOKENIZER_FILE}; only fast (Rust) tokenizers can ship in a bundle")
    zip_path = output_dir.with_suffix(".zip") if config.zip else None
    if not force and ((zip_path and zip_path.exists()) or output_dir.exists()):
        raise EdgetuneError(f"{zip_path if zip_path and zip_path.exists() else output_dir} already exists; "
                            "choose another output path or pass --force to replace it")

    # Golden texts come from the validation split the model was fine-tuned with.
    training_dir = Path(stage["source"]["training_dir"] if stage["stage"] == "quantize" else stage["source"]["path"])
    golden_texts = _golden_texts(training_dir, config.golden_examples)
    variants = _variants_table(source_dir)

    with atomic_directory(output_dir, overwrite=force) as staging:
        shutil.copy2(source_dir / MODEL_FILE, staging / MODEL_FILE)
        probabilities_output = append_softmax(staging / MODEL_FILE) if stage["task"] == "text-classification" else None
        shutil.copy2(source_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        labels = stage["labels"]
        (staging / LABELS_FILE).write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        if config.ort_format:
            _convert_to_ort(staging)
        manifest = _manifest(stage, source_dir, staging, labels, config)
        if probabilities_output:
            manifest.section["probabilities_output"] = probabilities_output
        _write_golden(staging, manifest.to_dict(), golden_texts)
        manifest = manifest.replace(golden=GOLDEN_FILE)
        (staging / "README.md").write_text(model_card(manifest.to_dict(), variants), encoding="utf-8")
        manifest = manifest.replace(files={p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()})
        manifest = manifest.sealed()
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        if zip_path is not None:
            _write_zip(staging, zip_path, output_dir.name)
    return BundleResult(output_dir, zip_path, manifest)


def _manifest(stage: dict, source_dir: Path, staging: Path, labels: list[str], config: BundleConfig) -> BundleManifest:
    from edgetune.export.onnx_export import graph_io

    special = _special_tokens(source_dir)
    machine = describe_machine()
    graph = graph_io(staging / MODEL_FILE)
    evaluation = stage.get("evaluation") or {}
    source = stage["source"]
    return BundleManifest(
        task=stage["task"],
        model=MODEL_FILE,
        model_ort="model.ort" if (staging / "model.ort").is_file() else None,
        tokenizer=TOKENIZER_FILE,
        inputs=graph["inputs"],
        outputs=graph["outputs"],
        opset=graph["opset"],
        section={"labels": labels, "labels_file": LABELS_FILE, "max_length": stage["max_length"],
                 "truncation": True, "padding": "longest in batch", **special},
        metrics={key: evaluation[key] for key in ("accuracy", "macro_f1", "p50_ms", "p90_ms", "size_mb")
                 if key in evaluation} | ({"test": evaluation["test"]} if "test" in evaluation else {})
        or (source.get("metrics") or {}),
        tuned_for={"variant": stage.get("variant", {}).get("name", "fp32"), "execution_provider":
                   "CPUExecutionProvider", "cpu_model": machine["cpu_model"],
                   "architecture": machine["architecture"], "isa_flags": machine["isa_flags"]},
        provenance={
            "base_model": source.get("base_model"),
            "data_fingerprint": (source.get("data") or {}).get("fingerprint"),
            "source_manifest_sha256": sha256_file(source_dir / STAGE_MANIFEST),
            "edgetune_version": __version__,
            "command": " ".join(sys.argv),
        },
        # Session settings the toolchain measured this graph with; the runtime applies them as data.
        session=stage.get("session", {}),
        golden_tolerance=config.golden_tolerance,
    )


def _special_tokens(source_dir: Path) -> dict:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source_dir / TOKENIZER_FILE))
    pad_token = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = source_dir / name
        if path.is_file():
            value = json.loads(path.read_text()).get("pad_token")
            pad_token = value.get("content") if isinstance(value, dict) else value
            if pad_token:
                break
    pad_token = pad_token or "[PAD]"
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise EdgetuneError(f"{source_dir}: pad token {pad_token!r} is not in the tokenizer's vocabulary")
    return {"pad_token": pad_token, "pad_id": pad_id}


def _golden_texts(training_dir: Path, count: int) -> list[str]:
    """One validation text per label, round-robin, so the golden set covers many classes."""
    texts, labels = heldout_split(training_dir, "validation")
    by_label: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_label.setdefault(label, []).append(text)
    chosen: list[str] = []
    while len(chosen) < count and any(by_label.values()):
        for label in sorted(by_label):
            if by_label[label] and len(chosen) < count:
                chosen.append(by_label[label].pop(0))
    return chosen


def _write_golden(staging: Path, manifest: dict, texts: list[str]) -> None:
    """Expected outputs computed by the runtime itself on this bundle's files."""
    from edgetune_runtime.bundle import Bundle

    runtime_bundle = Bundle(staging, manifest)
    probabilities = runtime_bundle.predict_proba(texts)
    golden = []
    for text, row in zip(texts, probabilities, strict=True):
        order = row.argsort()[::-1]
        golden.append({"text": text, "label": runtime_bundle.labels[int(order[0])],
                       "probability": round(float(row[order[0]]), 6),
                       "margin": round(float(row[order[0]] - row[order[1]]), 6) if len(order) > 1 else 1.0})
    (staging / GOLDEN_FILE).write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _variants_table(source_dir: Path) -> dict | None:
    report = source_dir / "quantize_report.json"
    return json.loads(report.read_text())["variants"] if report.is_file() else None


def _convert_to_ort(staging: Path) -> None:
    """ONNX Runtime's own converter: model.ort plus the operator list for a minimal build."""
    with tempfile.TemporaryDirectory(prefix="edgetune-ort-") as scratch:
        scratch_dir = Path(scratch)
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
        shutil.copy2(ort_files[0], staging / "model.ort")
        configs = sorted(scratch_dir.glob("*required_operators*.config"))
        if configs:
            shutil.copy2(configs[0], staging / "required_operators.config")


def _write_zip(staging: Path, zip_path: Path, folder: str) -> None:
    import zipfile

    descriptor, temporary = tempfile.mkstemp(prefix=f".{zip_path.name}.", dir=zip_path.parent)
    os.close(descriptor)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(staging.iterdir()):
                archive.write(path, f"{folder}/{path.name}")
        os.replace(temporary, zip_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
