"""Text classification: `ClassificationBundle`, the task's part of a bundle (labels, tokenizer, predictions).

Safe for concurrent `predict` calls from many threads: ONNX Runtime sessions support concurrent
`run` calls, the tokenizer is configured once at load and never mutated afterwards, and the only
shared state a call writes is the fast tokenizer's word cache: a dict, each of whose operations is
atomic (a lookup that races a clear only recomputes the word's pieces).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy

from edgetune_runtime.envelope import Bundle
from edgetune_runtime.errors import BundleError
from edgetune_runtime.features import FeatureBuilder
from edgetune_runtime.text_clip import TextClipper
from edgetune_runtime.text_inputs import check_texts
from edgetune_runtime.wordpiece import AsciiWordPiece

MAX_SEQUENCE_LENGTH = 65536
"""Longer than any encoder's position table edgetune builds for (512 for BERT, 8192 for ModernBERT)."""
MAX_LABELS = 1_000_000


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


class Prediction(NamedTuple):
    """One label and its probability. A named tuple: a frozen dataclass's __init__ measured ~15 us
    on the batch-1 path right after a session run."""

    label: str
    probability: float


class ClassificationBundle(Bundle):
    """A verified text-classification bundle: `predict` labels with probabilities. Use `Bundle.load(path)`."""

    def _read_section(self, section: dict, where: str) -> None:
        missing = [key for key in ("labels", "max_length", "pad_id") if key not in section]
        if missing:
            raise BundleError(f"{where}: the manifest lacks classification key {missing[0]!r}")
        labels, max_length, pad_id = section["labels"], section["max_length"], section["pad_id"]
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise BundleError(f"{where}: classification.labels should be a non-empty list of strings, "
                              f"not {_shown(labels)}")
        if len(labels) > MAX_LABELS:
            raise BundleError(f"{where}: classification.labels holds {len(labels)} labels; at most {MAX_LABELS}")
        # max_length sizes per-length tables made at load (features.py): a huge one would allocate gigabytes.
        if not _is_int(max_length) or not 1 <= max_length <= MAX_SEQUENCE_LENGTH:
            raise BundleError(f"{where}: classification.max_length is {_shown(max_length)}; it must be a whole "
                              f"number from 1 to {MAX_SEQUENCE_LENGTH}")
        if not _is_int(pad_id) or pad_id < 0:
            raise BundleError(f"{where}: classification.pad_id is {_shown(pad_id)}; it must be a token id "
                              "(a whole number >= 0)")
        self.labels: list[str] = list(labels)
        self.max_length: int = max_length
        self._pad_id: int = pad_id
        self._section = section

    def _prepare(self, where: str) -> None:
        outputs = {output.name: output for output in self.session.get_outputs()}
        # `edgetune bundle` puts the softmax in the graph (cheaper there: see the toolchain's
        # bundle/probabilities.py); a bundle naming no probabilities output hands over logits instead.
        probabilities_output = self._section.get("probabilities_output")
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
        self._check_max_length_fits_the_model(where)
        self.tokenizer = _tokenizer(self.directory / self.typed_manifest.tokenizer, self.max_length)
        # id_to_token is O(1) (the vocabulary's size took ~4 ms of load) and takes 32-bit ids only.
        if self._pad_id >= 2**32 or self.tokenizer.id_to_token(self._pad_id) is None:
            raise BundleError(f"{where}: classification.pad_id {self._pad_id} is not a token id of the tokenizer "
                              f"(its vocabulary has {self.tokenizer.get_vocab_size(with_added_tokens=True)} entries)")
        self._clip = TextClipper(self.tokenizer, self.max_length)
        # One text of printable ASCII skips the Rust tokenizer when the pure-Python WordPiece gives the
        # same ids (wordpiece.py: 0.045-0.07 ms against ~0.17 ms, both with caches as a session run leaves them).
        self._ascii_wordpiece = AsciiWordPiece.from_tokenizer(self.tokenizer, self.max_length)
        self._features = FeatureBuilder(self.input_names, self._pad_id, where, self.max_length,
                                        single_text_types_are_zero=not any(self.tokenizer.encode("probe, 42").type_ids))
        # The fast batch encoder skips character offsets, which classification never needs.
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)

    def _check_max_length_fits_the_model(self, where: str) -> None:
        # A max_length past the position table loads fine and fails inside ONNX Runtime on the first long
        # text (a Gather index out of range): refuse it at load, when the table can be found by name.
        from edgetune_runtime.external_data import MalformedModel, position_table_rows

        try:
            rows = position_table_rows(self.directory / self.typed_manifest.model)
        except (MalformedModel, OSError):
            return  # the model loaded in ONNX Runtime; a table this reader cannot find is not checked
        if rows is not None and self.max_length > rows:
            raise BundleError(f"{where}: classification.max_length {self.max_length} is longer than the model's "
                              f"{rows} positions; rebuild the bundle from a model fine-tuned with max_length "
                              f"{rows} or less")

    def _binding_probe_feeds(self) -> tuple[list[str], dict | None]:
        # A real text through the batch-1 feed builder: the probe runs exactly what `predict` will.
        return self._output_names, self._features.single(*self.token_ids("probe, 42"))

    def token_ids(self, text: str) -> tuple[list[int], list[int] | None]:
        """One text's token ids and token types (None: all zero), tokenised as the batch-1 path does."""
        text = self._clip(text)
        ids = self._ascii_wordpiece.ids(text) if self._ascii_wordpiece is not None else None
        if ids is not None:
            return ids, None
        encoding = self.tokenizer.encode(text)
        return encoding.ids, encoding.type_ids

    def encode(self, texts: Sequence[str]) -> dict[str, numpy.ndarray]:
        """Tokenise a batch, padded to its longest text; int64 arrays by graph input name."""
        return self._features.batch(self._encode_batch([self._clip(text) for text in texts]))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> numpy.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are tokenised once, sorted by token count and cut into batches of `batch_size`
        (length bucketing), and each batch is padded only to its own longest text.
        """
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if len(texts) == 1:
            # The latency path: no sorting, no padding, and the tokenizer works on this thread
            # instead of handing one text to its thread pool.
            scores = self._run_batch1(self._output_names, self._features.single(*self.token_ids(texts[0])), None)[0]
            return scores if self._to_probabilities is None else self._to_probabilities(scores)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype=numpy.float32)
        encodings = self._encode_batch([self._clip(text) for text in texts])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        probabilities = numpy.empty((len(texts), len(self.labels)), dtype=numpy.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            feeds = self._features.batch([encodings[i] for i in chosen])
            scores = self.session.run(self._output_names, feeds)[0]
            probabilities[chosen] = scores if self._to_probabilities is None else self._to_probabilities(scores)
        return probabilities

    def first_result(self, text: str) -> list[list[Prediction]]:
        """The prediction for one text: what cold start times."""
        return self.predict([text])

    def predict(self, texts: Sequence[str], top_k: int = 1, batch_size: int = 32) -> list[list[Prediction]]:
        """The `top_k` labels with probabilities for each text, most probable first."""
        # The latency path, checked with the cheapest tests first: one printable-ASCII text, top 1. It is
        # written out flat, with as few Python and numpy calls as possible, because each one made right
        # after a session run costs ~5-10 us while the CPU caches refill (measured: flattening it took
        # the overhead over a bare `session.run` from 0.12 to 0.09 ms).
        if top_k == 1 and type(texts) is list and len(texts) == 1 and type(texts[0]) is str \
                and self._ascii_wordpiece is not None and len(texts[0]) <= self._clip.bound:
            ids = self._ascii_wordpiece.ids(texts[0])
            if ids is not None:
                # (FeatureBuilder.single, inlined; the fast tokenizer gives all-zero token types.)
                scores = self._run_batch1(self._output_names, {
                    "input_ids": numpy.array([ids], dtype=numpy.int64), **self._features.zero_type_feeds[len(ids)]},
                    None)[0]
                row = (scores if self._to_probabilities is None else self._to_probabilities(scores))[0]
                best = row.argmax()  # a numpy integer indexes the list; item() gives a Python float in one call
                return [[Prediction(self.labels[best], row.item(best))]]
        check_top_k(top_k, self.labels)
        return top_predictions(self.predict_proba(texts, batch_size), self.labels, top_k)

    def text_model(self, intra_op_threads: int = 0):
        """The bundle's graph with the tokenizer inside (`edgetune bundle --tokenizer-in-graph`), run with
        onnxruntime-extensions: a `TextModel` with `predict` and `predict_proba` on raw texts."""
        from edgetune_runtime.text_model import TextModel

        return TextModel(self, intra_op_threads=intra_op_threads)

    def _parse_golden_example(self, example: dict) -> tuple[str, int, float, float, dict]:
        text = example["text"]
        expected = self.labels.index(example["label"])
        probability, margin = float(example["probability"]), float(example.get("margin", 1.0))
        if not isinstance(text, str):
            raise TypeError("a golden text is not a string")
        return text, expected, probability, margin, example

    def _golden_mismatches(self, examples: list[tuple[str, int, float, float, dict]], tolerance: float) -> list[dict]:
        # One batch, as the toolchain computed the expected outputs (`predict_proba` on all texts at once).
        return golden_mismatches(self.predict_proba([text for text, *_ in examples]), examples, self.labels,
                                 tolerance)


def check_top_k(top_k: int, labels: list[str]) -> None:
    if not 1 <= top_k <= len(labels):
        raise ValueError(f"top_k must be between 1 and {len(labels)} (the number of labels), not {top_k}")


def top_predictions(probabilities: numpy.ndarray, labels: list[str], top_k: int) -> list[list[Prediction]]:
    """The `top_k` labels of each row of `probabilities`, most probable first (ties: the lower label index)."""
    if top_k == 1:
        return [[Prediction(labels[j], float(row[j]))] for row, j in zip(probabilities, probabilities.argmax(1),
                                                                          strict=True)]
    top = numpy.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    return [[Prediction(labels[j], float(row[j])) for j in indices]
            for row, indices in zip(probabilities, top, strict=True)]


def golden_mismatches(probabilities: numpy.ndarray, examples: list[tuple[str, int, float, float, dict]],
                      labels: list[str], tolerance: float) -> list[dict]:
    """The golden examples whose top label or probability `probabilities` (one row each) do not reproduce."""
    mismatches = []
    for (_, expected, expected_probability, margin, example), row in zip(examples, probabilities, strict=True):
        top = int(row.argmax())
        drift = abs(float(row[expected]) - expected_probability)
        # Kernels differ across CPUs (int8 VNNI vs AVX2); a near-tie may legitimately flip.
        near_tie = margin <= tolerance
        if (top != expected and not near_tie) or drift > tolerance:
            mismatches.append({"text": example["text"], "expected": example["label"],
                               "expected_probability": example["probability"], "got": labels[top],
                               "got_probability": round(float(row[top]), 6)})
    return mismatches


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
