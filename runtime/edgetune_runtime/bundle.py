"""`Bundle`: load a model bundle (directory or zip), verify it, run it.

Thread-safe for predictions: ONNX Runtime sessions support concurrent `run` calls, and the
tokenizer is configured once at load and never mutated afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy

from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import MANIFEST_FILE, validate_manifest


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


@dataclass
class GoldenCheck:
    checked: int
    mismatches: list[dict]

    @property
    def passed(self) -> bool:
        return not self.mismatches


class Bundle:
    """A verified bundle, ready to predict. Use `Bundle.load(path)`."""

    def __init__(self, directory: Path, manifest: dict, *, intra_op_threads: int = 0,
                 providers: list[str] | None = None, keepalive: object = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self._keepalive = keepalive  # the temporary folder of an extracted zip lives as long as we do
        self.labels: list[str] = manifest["postprocessing"]["labels"]
        self.max_length: int = manifest["preprocessing"]["max_length"]
        self.session = _session(directory / manifest["model"], intra_op_threads, providers)
        self.input_names = [graph_input.name for graph_input in self.session.get_inputs()]
        self.tokenizer = _tokenizer(directory / manifest["preprocessing"]["tokenizer"], manifest["preprocessing"],
                                    self.max_length)

    @classmethod
    def load(cls, path: str | os.PathLike, *, intra_op_threads: int = 0, providers: list[str] | None = None) -> Bundle:
        """Load a bundle directory or .zip, refusing it if any file or the manifest was changed."""
        path = Path(path)
        keepalive = None
        if path.is_file():
            keepalive = tempfile.TemporaryDirectory(prefix="edgetune-bundle-")
            from edgetune_runtime.archive import safe_extract

            directory = safe_extract(path, Path(keepalive.name))
        elif path.is_dir():
            directory = path
        else:
            raise BundleError(f"{path}: no such bundle (expected a directory or a .zip)")
        manifest = verify_files(directory)
        return cls(directory, manifest, intra_op_threads=intra_op_threads, providers=providers, keepalive=keepalive)

    def encode(self, texts: list[str]) -> dict[str, numpy.ndarray]:
        """Tokenise a batch, padded to its longest text; int64 arrays by graph input name."""
        encodings = self.tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": numpy.array([e.ids for e in encodings], dtype=numpy.int64),
            "attention_mask": numpy.array([e.attention_mask for e in encodings], dtype=numpy.int64),
            "token_type_ids": numpy.array([e.type_ids for e in encodings], dtype=numpy.int64),
        }
        return {name: arrays[name] for name in self.input_names}

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> numpy.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are sorted by length into batches (length bucketing) so each batch pads little.
        """
        if isinstance(texts, str):
            raise TypeError("predict expects a list of texts, not a single string")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"item {index} is {type(text).__name__}, not text")
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype=numpy.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probabilities = numpy.empty((len(texts), len(self.labels)), dtype=numpy.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            logits = self.session.run(None, self.encode([texts[i] for i in chosen]))[0]
            probabilities[chosen] = _softmax(logits)
        return probabilities

    def predict(self, texts: list[str], top_k: int = 1, batch_size: int = 32) -> list[list[Prediction]]:
        """The `top_k` labels with probabilities for each text."""
        probabilities = self.predict_proba(texts, batch_size)
        top = numpy.argsort(-probabilities, axis=1)[:, :top_k]
        return [[Prediction(self.labels[j], float(row[j])) for j in indices]
                for row, indices in zip(probabilities, top, strict=True)]

    def verify(self) -> GoldenCheck:
        """Run the golden examples shipped in the bundle and report any disagreement."""
        golden_name = self.manifest.get("golden")
        if not golden_name:
            raise BundleError(f"{self.directory}: the bundle ships no golden examples")
        examples = json.loads((self.directory / golden_name).read_text(encoding="utf-8"))
        tolerance = float(self.manifest.get("golden_tolerance", 0.02))
        probabilities = self.predict_proba([example["text"] for example in examples])
        mismatches = []
        for example, row in zip(examples, probabilities, strict=True):
            top = int(row.argmax())
            expected = self.labels.index(example["label"])
            drift = abs(float(row[expected]) - example["probability"])
            # Kernels differ across CPUs (int8 VNNI vs AVX2); a near-tie may legitimately flip.
            near_tie = example.get("margin", 1.0) <= tolerance
            if (top != expected and not near_tie) or drift > tolerance:
                mismatches.append({"text": example["text"], "expected": example["label"],
                                   "expected_probability": example["probability"], "got": self.labels[top],
                                   "got_probability": round(float(row[top]), 6)})
        return GoldenCheck(len(examples), mismatches)


def verify_files(directory: Path) -> dict:
    """Validate the manifest and the sha256 of every file it lists; refuse unlisted links."""
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST_FILE}; not an edgetune bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BundleError(f"{manifest_path}: not valid JSON ({error})") from None
    validate_manifest(manifest, str(manifest_path))
    root = directory.resolve()
    for name, expected in manifest["files"].items():
        path = directory / name
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise BundleError(f"{directory}: {name} is a link or points outside the bundle; refusing it")
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is listed in the manifest but missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{directory}: {name} does not match its sha256 in the manifest (changed or corrupt)")
    return manifest


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = numpy.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _session(model_path: Path, intra_op_threads: int, providers: list[str] | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(model_path), options,
                                        providers=providers or ["CPUExecutionProvider"])


def _tokenizer(path: Path, preprocessing: dict, max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=preprocessing["pad_id"], pad_token=preprocessing["pad_token"])
    return tokenizer
