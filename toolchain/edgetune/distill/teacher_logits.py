"""The teacher's logits on the training (and transfer) texts: computed once, then read from a cache.

A base-size teacher costs several student steps per batch, so running it inside every training step
would dominate a CPU run. Its outputs depend only on the teacher, the texts and how many tokens it
reads, so they are cached under a key made of exactly those: the teacher's manifest hash (or weights
hash), a fingerprint of the texts it labels (training rows and transfer text, in order) and its max
length. The whole-data fingerprint would over-specify it: a new test split changes nothing the
teacher sees. Raw logits in the teacher's own label order are stored, so any temperature reuses them.
A cached file is used only when its shapes, its checksum (written with it) and its values all check
out; anything else (NaN values, a truncated or edited file) is recomputed, never trained on.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy

from edgetune.errors import ConfigError
from edgetune.models.cache import cache_root
from edgetune.stage_manifest import manifest_sha256, read_stage_manifest
from edgetune.tasks import TEXT_CLASSIFICATION
from edgetune_runtime.atomic_write import atomic_file
from edgetune_runtime.hashing import sha256_bytes, sha256_file, sha256_json

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class TeacherOutputs:
    """Teacher logits per text, columns in the data's label order, and where they are cached."""

    logits: numpy.ndarray
    pooled: numpy.ndarray | None
    cache_path: Path
    from_cache: bool


def teacher_record(teacher_dir: Path, label_names: list[str]) -> dict:
    """Check the teacher can teach these labels; return what identifies it (for the key and the manifest)."""
    config_path = teacher_dir / "config.json"
    if not teacher_dir.is_dir():
        raise ConfigError(f"teacher: {teacher_dir} does not exist; pass the output directory of `edgetune finetune`")
    if not config_path.is_file():
        raise ConfigError(f"teacher: {teacher_dir} is not a model directory (no config.json); "
                          "pass the output directory of `edgetune finetune`")
    config = json.loads(config_path.read_text())
    teacher_labels = _teacher_labels(config, config_path)
    missing = [label for label in label_names if label not in teacher_labels]
    extra = [label for label in teacher_labels if label not in label_names]
    if missing or extra:
        problem = (f"the data's label {missing[0]!r} is not among the teacher's" if missing
                   else f"the teacher's label {extra[0]!r} never appears in the training data")
        raise ConfigError(
            f"teacher: {config_path}: {problem} ({len(teacher_labels)} teacher labels, {len(label_names)} in the "
            "data); distil from a teacher fine-tuned on the same labels"
        )
    weights = next((teacher_dir / name for name in _WEIGHT_FILES if (teacher_dir / name).is_file()), None)
    manifest = read_stage_manifest(teacher_dir)
    if manifest.get("task", TEXT_CLASSIFICATION) != TEXT_CLASSIFICATION:  # its logits are what the student learns
        raise ConfigError(f"teacher: {teacher_dir} is a {manifest['task']!r} model (its edgetune.json); "
                          f"distil from a {TEXT_CLASSIFICATION} model")
    # The manifest already holds the weights' hash; hashing 400 MB again is only for teachers without one.
    weights_sha256 = manifest.get("files", {}).get(weights.name) if weights else None
    if weights and not weights_sha256:
        weights_sha256 = sha256_file(weights)
    return {
        "path": str(teacher_dir.resolve()),
        "manifest_sha256": manifest_sha256(teacher_dir),
        "weights_sha256": weights_sha256,
        "labels": teacher_labels,
        "hidden_size": _hidden_size(config),
        "metrics": manifest.get("metrics"),
    }


def _teacher_labels(config: dict, config_path: Path) -> list[str]:
    id2label = config.get("id2label") or {}
    if not id2label:
        raise ConfigError(f"teacher: {config_path} has no id2label; the teacher must be a fine-tuned classifier")
    return [id2label[key] for key in sorted(id2label, key=int)]


def _hidden_size(config: dict) -> int | None:
    # BERT-likes call the width hidden_size, DistilBERT dim, T5-likes d_model.
    return next((config[key] for key in ("hidden_size", "dim", "d_model") if isinstance(config.get(key), int)), None)


def cache_key(teacher: dict, texts: list[str], max_length: int, with_pooled: bool) -> str:
    texts_digest = sha256_bytes("\x1e".join(texts).encode("utf-8", "surrogatepass"))
    identity = {"teacher": teacher["manifest_sha256"] or teacher["weights_sha256"], "texts": texts_digest,
                "max_length": max_length, "pooled": with_pooled}
    return sha256_json(identity)[:32]


def default_cache_dir() -> Path:
    return cache_root() / "teacher-logits"


def teacher_outputs(teacher_dir: Path, teacher: dict, texts: list[str], label_names: list[str], *,
                    max_length: int, batch_size: int, with_pooled: bool, cache_dir: Path) -> TeacherOutputs:
    """The teacher's logits (and pooled last hidden states when asked) for `texts`, cached."""
    path = cache_dir / f"{cache_key(teacher, texts, max_length, with_pooled)}.npz"
    # Columns are returned in the data's label order, whatever order the teacher's head uses.
    order = [teacher["labels"].index(label) for label in label_names]
    expected_shape = (len(texts), len(teacher["labels"]))
    # A file with pooled states holds the same logits, so a run without the representation loss reads it too:
    # tune trials that alternate hidden_weight 0 and > 0 then run the teacher once (25,000 texts: 4 minutes).
    candidates = [path] if with_pooled else [path, cache_dir / f"{cache_key(teacher, texts, max_length, True)}.npz"]
    # with_pooled implies a known hidden size: DistillationHooks.prepare_model refuses a teacher without one.
    pooled_shape = (len(texts), teacher["hidden_size"]) if with_pooled else None
    for candidate in candidates:
        if not candidate.is_file():
            continue
        cached = _read_valid_cache(candidate, expected_shape, pooled_shape)
        if isinstance(cached, tuple):
            log.info("teacher logits read from the cache %s", candidate)
            logits, pooled = cached
            return TeacherOutputs(logits[:, order], pooled if with_pooled else None, candidate, True)
        log.warning("teacher logits cache %s is unusable (%s); computing the logits again", candidate, cached)
    logits, pooled = _run_teacher(teacher_dir, texts, max_length, batch_size, with_pooled)
    _refuse_non_finite(teacher_dir, logits, pooled)
    _save_atomic(path, logits, pooled)
    log.info("teacher logits for %d texts cached in %s", len(texts), path)
    return TeacherOutputs(logits[:, order], pooled, path, False)


def _read_valid_cache(path: Path, expected_shape: tuple[int, int],
                      pooled_shape: tuple[int, int] | None) -> tuple[numpy.ndarray, numpy.ndarray] | str:
    """The cached (logits, pooled) when every check passes, else what is wrong with the file."""
    try:
        with numpy.load(path) as stored:  # allow_pickle stays False: a cache file runs no code
            if "checksum" not in stored.files:
                return "no checksum: written by an older edgetune or another program"
            logits, pooled, recorded = stored["logits"], stored["pooled"], str(stored["checksum"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        return f"unreadable: {type(error).__name__}"
    if logits.dtype != numpy.float32 or pooled.dtype != numpy.float32:
        return f"dtype {logits.dtype}/{pooled.dtype}, expected float32"
    if logits.shape != expected_shape:
        return f"logits shape {logits.shape}, expected {expected_shape}"
    if pooled_shape is not None and pooled.shape != pooled_shape:
        return f"pooled shape {pooled.shape}, expected {pooled_shape}"
    if _checksum(logits, pooled) != recorded:
        return "checksum mismatch: the file changed after it was written"
    if not (numpy.isfinite(logits).all() and numpy.isfinite(pooled).all()):
        return "NaN or infinite values"
    return logits, pooled


def _checksum(logits: numpy.ndarray, pooled: numpy.ndarray) -> str:
    """sha256 over both arrays' dtype, shape and bytes: any edited value or reshaped array changes it."""
    parts = []
    for array in (logits, pooled):
        contiguous = numpy.ascontiguousarray(array)
        parts += [f"{contiguous.dtype.str}{contiguous.shape};".encode(), contiguous.tobytes()]
    return sha256_bytes(b"".join(parts))  # megabytes at most: one logit row per training text


def _refuse_non_finite(teacher_dir: Path, logits: numpy.ndarray, pooled: numpy.ndarray | None) -> None:
    """A teacher whose own outputs hold NaN or infinity (a diverged fine-tune) cannot teach; nothing is cached."""
    bad_rows = numpy.flatnonzero(~numpy.isfinite(logits).all(axis=1))
    if pooled is not None and not bad_rows.size:
        bad_rows = numpy.flatnonzero(~numpy.isfinite(pooled).all(axis=1))
    if bad_rows.size:
        raise ConfigError(f"teacher: {teacher_dir} outputs NaN or infinite values for {bad_rows.size} of "
                          f"{len(logits)} texts (first: text {bad_rows[0] + 1}); the teacher's weights are broken - "
                          "fine-tune the teacher again, or pass another --teacher")


def _run_teacher(teacher_dir: Path, texts: list[str], max_length: int, batch_size: int,
                 with_pooled: bool) -> tuple[numpy.ndarray, numpy.ndarray | None]:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).to(device).eval()
    # Similar lengths in a batch waste little compute on padding; results go back to the input order.
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    logits = numpy.zeros((len(texts), model.config.num_labels), dtype=numpy.float32)
    pooled = numpy.zeros((len(texts), model.config.hidden_size), dtype=numpy.float32) if with_pooled else None
    log.info("teacher %s labels %d texts on %s", teacher_dir, len(texts), device)
    # A base-size teacher over tens of thousands of texts takes many minutes on a CPU: show where it is.
    with torch.inference_mode(), tqdm(total=len(texts), desc="teacher logits", unit="text") as progress:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[row] for row in rows], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt").to(device)
            output = model(**batch, output_hidden_states=with_pooled)
            logits[rows] = output.logits.float().cpu().numpy()
            if with_pooled:
                pooled[rows] = mean_pool(output.hidden_states[-1], batch["attention_mask"]).float().cpu().numpy()
            progress.update(len(rows))
    return logits, pooled


def mean_pool(hidden_states, attention_mask):
    """Average of the token vectors that are not padding: the sentence representation."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _save_atomic(path: Path, logits: numpy.ndarray, pooled: numpy.ndarray | None) -> None:
    # Several processes (accelerate launch) may compute the same entry; each renames a complete file.
    # numpy is handed the open file: given a name, it would append `.npz` to the temporary one.
    stored_pooled = pooled if pooled is not None else numpy.zeros((0,), dtype=numpy.float32)
    with atomic_file(path, "wb") as handle:
        numpy.savez(handle, logits=logits, pooled=stored_pooled, checksum=numpy.array(_checksum(logits, stored_pooled)))
