"""What `edgetune-runtime bench` times: batch-1 latency beside raw ONNX Runtime, and batched throughput.

Both go through the one timing loop, `edgetune_runtime.timing.interleaved_timings`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from edgetune_runtime.bundle import Bundle
from edgetune_runtime.timing import interleaved_timings


@dataclass
class Timings:
    """Wall times of the calls of one (threads, batch size) setting, and the labels they predicted."""

    call_ms: list[float]
    texts: int
    predicted: list[str]
    raw_ort_ms: list[float] | None = None
    """Batch 1 only: `session.run` alone on the same pre-tokenised text, timed beside each call."""
    tokenize_ms: list[float] | None = None
    """Batch 1 only: the tokenizer alone on one text, taking its turn beside the two calls above."""

    def percentile_ms(self, q: float, values: list[float] | None = None) -> float:
        return round(float(numpy.percentile(values if values is not None else self.call_ms, q)), 4)

    @property
    def throughput_texts_per_s(self) -> float:
        return round(self.texts / (sum(self.call_ms) / 1000), 2)


def time_batch1(bundle: Bundle, texts: list[str], warmup: int) -> Timings:
    """`bundle.predict([text])` for each text, in shuffled turns with `session.run` on its pre-tokenised
    input and with the tokenizer alone on it.

    All three run on the same text one right after another, so a noisy neighbour or a cold cache
    hits them alike; predict minus raw is the runtime's own cost (tokenising, building arrays,
    softmax, top-k, result objects), and the tokenizer's turn, most often right after a session
    run, finds the caches about as cold as predict's own tokenising does.
    """
    feeds = [bundle.encode([text]) for text in texts]  # what a user who tokenised ahead would pass
    session = bundle.session
    predicted: list[str] = [""] * len(texts)

    def predict(index: int) -> None:
        predicted[index] = bundle.predict([texts[index]])[0][0].label

    timings = interleaved_timings({"predict": predict, "raw_ort": lambda index: session.run(None, feeds[index]),
                                   "tokenize": lambda index: bundle.token_ids(texts[index])},
                                  len(texts), warmup=warmup)
    return Timings(timings["predict"], len(texts), predicted, timings["raw_ort"], timings["tokenize"])


def time_batches(bundle: Bundle, texts: list[str], batch_size: int, warmup: int) -> Timings:
    """`bundle.predict(chunk)` over consecutive chunks of `batch_size` texts in file order."""
    chunks = [texts[start:start + batch_size] for start in range(0, len(texts), batch_size)]
    predicted: list[list[str]] = [[] for _ in chunks]

    def predict(index: int) -> None:
        predicted[index] = [row[0].label for row in bundle.predict(chunks[index], batch_size=batch_size)]

    timings = interleaved_timings({"predict": predict}, len(chunks), warmup=max(1, warmup // batch_size))
    return Timings(timings["predict"], len(texts), [label for chunk in predicted for label in chunk])
