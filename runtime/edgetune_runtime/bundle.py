"""`Bundle`: load a model bundle (directory or zip), verify it, run it.

Safe for concurrent `predict` calls from many threads: ONNX Runtime sessions support concurrent
`run` calls, the tokenizer is configured once at load and never mutated afterwards, and the only
shared state a call writes is the fast tokenizer's word cache: a dict, each of whose operations is
atomic (a lookup that races a clear only recomputes the word's pieces).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy

from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.features import FeatureBuilder
from edgetune_runtime.hashing import BackgroundSha256, sha256_file
from edgetune_runtime.manifest import MANIFEST_FILE, _from_format_1, validate_manifest
from edgetune_runtime.session import DEFAULT_PROVIDERS, create_session
from edgetune_runtime.wordpiece import AsciiWordPiece


class Prediction(NamedTuple):
    """One label and its probability. A named tuple: a frozen dataclass's __init__ measured ~15 us
    on the batch-1 path right after a session run."""

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

    def __init__(self, directory: Path, manifest: dict, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 providers: Sequence[str] | None = None, session_options=None, keepalive: object = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self._keepalive = keepalive  # the temporary folder of an extracted zip lives as long as we do
        where = str(directory / MANIFEST_FILE)
        try:
            if manifest.get("format_version") == 1:
                manifest = _from_format_1(manifest)
            section = manifest["classification"]
            self.labels: list[str] = list(section["labels"])
            self.max_length: int = int(section["max_length"])
            tokenizer_file, pad_id = manifest["tokenizer"], int(section["pad_id"])
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{where}: the manifest lacks classification key {error}") from None
        if not self.labels or self.max_length < 1:
            raise BundleError(f"{where}: the manifest needs at least one label and a max_length of at least 1")
        model_path = directory / manifest["model"]
        try:
            self.session = create_session(model_path, intra_op_threads=intra_op_threads,
                                          inter_op_threads=inter_op_threads, providers=providers,
                                          session_options=session_options, tuning=manifest.get("session"))
        except Exception as error:
            # A sealed bundle whose model is not a loadable graph (built wrong, or re-sealed by hand):
            # ONNX Runtime's own exception types all derive from Exception, so they are told apart by module.
            if not type(error).__module__.startswith("onnxruntime"):
                raise
            raise BundleError(f"{model_path}: ONNX Runtime cannot load the model "
                              f"({str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__})"
                              ) from None
        self.input_names = [graph_input.name for graph_input in self.session.get_inputs()]
        # The batch-1 paths call the session's compiled binding directly. `InferenceSession.run` first
        # checks in Python that the feed names every input, that no OrtValue in it is borrowed and that
        # no graph capture is asked for: always true of the feeds built here, and ~7 us of the overhead
        # right after a session run. Only with the CPU provider alone, since the public `run` also
        # retries on a fallback provider when another one fails.
        binding = getattr(self.session, "_sess", None)
        cpu_only = self.session.get_providers() == list(DEFAULT_PROVIDERS)
        self._run_batch1 = binding.run if binding is not None and cpu_only else self.session.run
        outputs = {output.name: output for output in self.session.get_outputs()}
        # `edgetune bundle` puts the softmax in the graph (cheaper there: see the toolchain's
        # bundle/probabilities.py); a bundle naming no probabilities output hands over logits instead.
        probabilities_output = section.get("probabilities_output")
        if probabilities_output is not None and probabilities_output not in outputs:
            raise BundleError(f"{where}: classification.probabilities_output {probabilities_output!r} is not an "
                              f"output of the model (outputs: {', '.join(outputs)})")
        scores = outputs[probabilities_output] if probabilities_output else next(iter(outputs.values()))
        self._output_names = [scores.name]
        # float32 probabilities from the graph are used as they come: no call at all on the latency path.
        self._to_probabilities = (None if probabilities_output and scores.type == "tensor(float)"
                                  else _as_float32 if probabilities_output else _softmax)
        classes = scores.shape[-1] if scores.shape else None
        if isinstance(classes, int) and classes != len(self.labels):
            raise BundleError(f"{where}: the manifest lists {len(self.labels)} labels but the model outputs {classes}")
        self.tokenizer = _tokenizer(directory / tokenizer_file, self.max_length)
        # One text of printable ASCII skips the Rust tokenizer when the pure-Python WordPiece gives the
        # same ids (wordpiece.py: 0.045-0.07 ms against ~0.17 ms, both with caches as a session run leaves them).
        self._ascii_wordpiece = AsciiWordPiece.from_tokenizer(self.tokenizer, self.max_length)
        self._features = FeatureBuilder(self.input_names, pad_id, where, self.max_length,
                                        single_text_types_are_zero=not any(self.tokenizer.encode("probe, 42").type_ids))
        # The fast batch encoder skips character offsets, which classification never needs.
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)

    @classmethod
    def load(cls, path: str | os.PathLike, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
             providers: Sequence[str] | None = None, session_options=None) -> Bundle:
        """Load a bundle directory or .zip, refusing it if any file or the manifest was changed.

        `intra_op_threads`/`inter_op_threads` (0: ONNX Runtime chooses), `providers` (default CPU)
        and `session_options` (an `onnxruntime.SessionOptions` for anything else) set up the session.
        """
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
        manifest = verify_files(directory, defer_model=True)
        # The model is the one large file: its sha256 is computed on another thread while ONNX Runtime
        # builds the session, so cold start does not wait for the hash (~0.1 s for 23 MB on a CPU without
        # SHA instructions). Both read the file from disk (the page cache serves the second read): reading
        # it into memory once and loading from those bytes measured +38 MB of peak memory.
        model_name = manifest["model"]
        digest = BackgroundSha256(directory / model_name)
        try:
            bundle = cls(directory, manifest, intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
                         providers=providers, session_options=session_options, keepalive=keepalive)
        finally:
            # Whatever happened while loading, a changed model is reported as such, not as what it broke.
            _check_sha256(directory, model_name, digest.hexdigest(), manifest)
        return bundle

    def token_ids(self, text: str) -> tuple[list[int], list[int] | None]:
        """One text's token ids and token types (None: all zero), tokenised as the batch-1 path does."""
        ids = self._ascii_wordpiece.ids(text) if self._ascii_wordpiece is not None else None
        if ids is not None:
            return ids, None
        encoding = self.tokenizer.encode(text)
        return encoding.ids, encoding.type_ids

    def encode(self, texts: Sequence[str]) -> dict[str, numpy.ndarray]:
        """Tokenise a batch, padded to its longest text; int64 arrays by graph input name."""
        return self._features.batch(self._encode_batch(list(texts)))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> numpy.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are tokenised once, sorted by token count and cut into batches of `batch_size`
        (length bucketing), and each batch is padded only to its own longest text.
        """
        texts = _check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if len(texts) == 1:
            # The latency path: no sorting, no padding, and the tokenizer works on this thread
            # instead of handing one text to its thread pool.
            scores = self._run_batch1(self._output_names, self._features.single(*self.token_ids(texts[0])), None)[0]
            return scores if self._to_probabilities is None else self._to_probabilities(scores)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype=numpy.float32)
        encodings = self._encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        probabilities = numpy.empty((len(texts), len(self.labels)), dtype=numpy.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            feeds = self._features.batch([encodings[i] for i in chosen])
            scores = self.session.run(self._output_names, feeds)[0]
            probabilities[chosen] = scores if self._to_probabilities is None else self._to_probabilities(scores)
        return probabilities

    def predict(self, texts: Sequence[str], top_k: int = 1, batch_size: int = 32) -> list[list[Prediction]]:
        """The `top_k` labels with probabilities for each text, most probable first."""
        # The latency path, checked with the cheapest tests first: one printable-ASCII text, top 1. It is
        # written out flat, with as few Python and numpy calls as possible, because each one made right
        # after a session run costs ~5-10 us while the CPU caches refill (measured: flattening it took
        # the overhead over a bare `session.run` from 0.12 to 0.09 ms).
        if top_k == 1 and type(texts) is list and len(texts) == 1 and type(texts[0]) is str \
                and self._ascii_wordpiece is not None:
            ids = self._ascii_wordpiece.ids(texts[0])
            if ids is not None:
                # (FeatureBuilder.single, inlined; the fast tokenizer gives all-zero token types.)
                scores = self._run_batch1(self._output_names, {
                    "input_ids": numpy.array([ids], dtype=numpy.int64), **self._features.zero_type_feeds[len(ids)]},
                    None)[0]
                row = (scores if self._to_probabilities is None else self._to_probabilities(scores))[0]
                best = row.argmax()  # a numpy integer indexes the list; item() gives a Python float in one call
                return [[Prediction(self.labels[best], row.item(best))]]
        if not 1 <= top_k <= len(self.labels):
            raise ValueError(f"top_k must be between 1 and {len(self.labels)} (the number of labels), not {top_k}")
        probabilities = self.predict_proba(texts, batch_size)
        labels = self.labels
        if top_k == 1:
            return [[Prediction(labels[j], float(row[j]))] for row, j in zip(probabilities, probabilities.argmax(1),
                                                                              strict=True)]
        top = numpy.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [[Prediction(labels[j], float(row[j])) for j in indices]
                for row, indices in zip(probabilities, top, strict=True)]

    def verify(self) -> GoldenCheck:
        """Run the golden examples shipped in the bundle and report any disagreement."""
        golden_name = self.manifest.get("golden")
        if not golden_name:
            raise BundleError(f"{self.directory}: the bundle ships no golden examples")
        path = self.directory / golden_name
        try:  # hashed with the bundle, but a re-sealed bundle can still carry a malformed file
            examples = json.loads(path.read_text(encoding="utf-8"))
            texts = [example["text"] for example in examples]
            expected_ids = [self.labels.index(example["label"]) for example in examples]
            expected_probabilities = [float(example["probability"]) for example in examples]
            margins = [float(example.get("margin", 1.0)) for example in examples]
            tolerance = float(self.manifest.get("golden_tolerance", 0.02))
            if not all(isinstance(text, str) for text in texts):
                raise TypeError("a golden text is not a string")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise BundleError(f"{path}: the golden examples are malformed ({type(error).__name__}: {error})") from None
        probabilities = self.predict_proba(texts)
        mismatches = []
        for example, row, expected, expected_probability, margin in zip(
                examples, probabilities, expected_ids, expected_probabilities, margins, strict=True):
            top = int(row.argmax())
            drift = abs(float(row[expected]) - expected_probability)
            # Kernels differ across CPUs (int8 VNNI vs AVX2); a near-tie may legitimately flip.
            near_tie = margin <= tolerance
            if (top != expected and not near_tie) or drift > tolerance:
                mismatches.append({"text": example["text"], "expected": example["label"],
                                   "expected_probability": example["probability"], "got": self.labels[top],
                                   "got_probability": round(float(row[top]), 6)})
        return GoldenCheck(len(examples), mismatches)


def verify_files(directory: Path, defer_model: bool = False) -> dict:
    """Validate the manifest and the sha256 of every file it lists; refuse unlisted links.

    With `defer_model` the model file's content hash is left to the caller (`Bundle.load` hashes
    the model while it loads it); the model is still checked to exist and to stay inside.
    """
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST_FILE}; not an edgetune bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BundleError(f"{manifest_path}: not valid JSON ({error})") from None
    validate_manifest(manifest, str(manifest_path))
    root = directory.resolve()
    for name in manifest["files"]:
        path = directory / name
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise BundleError(f"{directory}: {name} is a link or points outside the bundle; refusing it")
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is listed in the manifest but missing")
        if not (defer_model and name == manifest["model"]):
            _check_sha256(directory, name, sha256_file(path), manifest)
    return manifest


def _check_sha256(directory: Path, name: str, actual: str, manifest: dict) -> None:
    if actual != manifest["files"][name]:
        raise BundleError(f"{directory}: {name} does not match its sha256 in the manifest (changed or corrupt)")


def _check_texts(texts: Sequence[str]) -> list[str]:
    """`texts` as a list, each item checked: a non-string is a TypeError, a lone surrogate an InputError."""
    if isinstance(texts, str):
        raise TypeError("predict expects a list of texts, not a single string")
    texts = texts if isinstance(texts, list) else list(texts)  # tuples, arrays, Series and generators too
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"item {index} is {type(text).__name__}, not text")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                # Lone surrogates (undecodable bytes smuggled in by surrogateescape, or broken UTF-16)
                # are not text the tokenizer can read; name them instead of failing inside it.
                raise InputError(f"item {index}: character {error.start} is a lone surrogate "
                                 f"{text[error.start]!r}, not valid Unicode text; decode the input as UTF-8 "
                                 "(errors='replace' turns bad bytes into U+FFFD)") from None
    return texts


def _as_float32(probabilities: numpy.ndarray) -> numpy.ndarray:
    """Probabilities the graph computed, widened from fp16 when the graph runs in it."""
    return numpy.asarray(probabilities, dtype=numpy.float32)


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    """Row-wise softmax, in place on the logits ONNX Runtime just handed us (they are ours to reuse)."""
    logits = numpy.asarray(logits, dtype=numpy.float32)  # an fp16 graph's logits are widened first
    if len(logits) == 1:  # the latency path: whole-array reductions skip the keepdims machinery
        logits -= logits.max()
        numpy.exp(logits, out=logits)
        logits /= logits.sum()
        return logits
    logits -= logits.max(axis=1, keepdims=True)
    numpy.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def _tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust tokenizer raises a bare Exception for a file it cannot parse
        raise BundleError(f"{path}: cannot load the tokenizer ({error})") from None
    tokenizer.enable_truncation(max_length=max_length)
    # Padding is the runtime's job (features.py): one text is never padded, a batch only to its longest.
    tokenizer.no_padding()
    return tokenizer
