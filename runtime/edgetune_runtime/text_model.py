"""A classification bundle's text model: the graph with the tokenizer inside (`edgetune bundle --tokenizer-in-graph`).

It takes one raw string and returns the labels' probabilities, so apps without a Python tokenizer
(Kotlin, Swift, C++, JavaScript) run the same file with ONNX Runtime and onnxruntime-extensions.
Here it runs when the optional `onnxruntime-extensions` package is installed
(`pip install "edgetune-runtime[extensions]"`): its custom-op library is registered in the session.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy

from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.session import create_session, load_failure
from edgetune_runtime.text_inputs import check_texts


def extensions_library() -> str:
    """The path of onnxruntime-extensions' custom-op library; `InputError` saying how to get it when absent."""
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        raise InputError("the bundle's text model needs onnxruntime-extensions: pip install "
                         "'edgetune-runtime[extensions]' (or onnxruntime-extensions)") from None
    return get_library_path()


class TextModel:
    """Raw text in, probabilities out, one text per session run. Build it with `ClassificationBundle.text_model()`."""

    def __init__(self, bundle, *, intra_op_threads: int = 0) -> None:
        import onnxruntime

        section = bundle.typed_manifest.section
        name = section.get("text_model")
        if not isinstance(name, str):
            raise BundleError(f"{bundle.directory}: the bundle has no text model; rebuild it with "
                              "`edgetune bundle --tokenizer-in-graph`")
        self.labels: list[str] = bundle.labels
        self._bundle = bundle
        self._input = section.get("text_model_input", "text")
        self._output = section.get("text_model_output", "probabilities")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.register_custom_ops_library(extensions_library())
        path = bundle.directory / name
        try:
            # The bundled graph's session tuning (disabled optimisers) holds for the same graph behind the tokenizer.
            self.session = create_session(path, intra_op_threads=intra_op_threads, session_options=options,
                                          tuning=bundle.manifest.get("session"))
        except Exception as error:
            failure = load_failure(path, error, "the text model")
            if failure is None:
                raise
            raise failure from None
        inputs = {value.name for value in self.session.get_inputs()}
        outputs = {value.name for value in self.session.get_outputs()}
        if self._input not in inputs or self._output not in outputs:
            raise BundleError(f"{path}: the text model lacks input {self._input!r} or output {self._output!r}")

    def predict_proba(self, texts: Sequence[str]) -> numpy.ndarray:
        """Class probabilities, one row per text, each text run on its own."""
        texts = check_texts(texts)
        probabilities = numpy.empty((len(texts), len(self.labels)), dtype=numpy.float32)
        for row, text in enumerate(texts):
            probabilities[row] = self.session.run([self._output],
                                                  {self._input: numpy.array([text], dtype=object)})[0][0]
        return probabilities

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """The `top_k` labels with probabilities for each text, most probable first."""
        from edgetune_runtime.tasks.classification import check_top_k, top_predictions

        check_top_k(top_k, self.labels)
        return top_predictions(self.predict_proba(texts), self.labels, top_k)

    def verify(self):
        """The bundle's golden texts through the text model and through the Python path, one text at a time,
        judged as `Bundle.verify` judges a device (top label, unless a near-tie; probability drift).

        One text at a time on both sides: a dynamically quantised graph scales activations per batch, so
        the golden probabilities (computed in one batch) can sit ~0.02 from any batch-1 run of the same
        graph (measured on the int8 MiniLM bundle: 0.549 against 0.574).
        """
        from edgetune_runtime.envelope import GoldenCheck

        texts = [text for text, *_ in self._bundle.golden_examples()]
        return GoldenCheck(len(texts), self.mismatches(texts))

    def mismatches(self, texts: Sequence[str]) -> list[dict]:
        """The texts on which the text model and the Python runtime (batch 1) disagree, as golden mismatches."""
        from edgetune_runtime.tasks.classification import golden_mismatches

        expected = numpy.stack([self._bundle.predict_proba([text])[0] for text in texts])
        examples = []
        for text, row in zip(texts, expected, strict=True):
            order = row.argsort()[::-1]
            margin = float(row[order[0]] - row[order[1]]) if len(order) > 1 else 1.0
            examples.append((text, int(order[0]), float(row[order[0]]), margin,
                             {"text": text, "label": self.labels[int(order[0])],
                              "probability": round(float(row[order[0]]), 6)}))
        return golden_mismatches(self.predict_proba(texts), examples, self.labels,
                                 self._bundle.typed_manifest.golden_tolerance)
