"""Timing loops of `edgetune-runtime bench`: batch-1 latency beside raw ONNX Runtime, and batched throughput."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy

from edgetune_runtime.bundle import Bundle


@dataclass
class Timings:
    """Wall times of the calls of one (threads, batch size) setting, and the labels they predicted."""

    call_ms: list[float]
    texts: int
    predicted: list[str]
    raw_ort_ms: list[float] | None = None
    """Batch 1 only: `session.run` alone on the same pre-tokenised text, timed beside each call."""
    tokenize_ms: list[float] | None = None
    """Batch 1 only: the tokenizer alone on one text, right after a `session.run` (as inside predict)."""

    def percentile_ms(self, q: float, values: list[float] | None = None) -> float:
        return round(float(numpy.percentile(values if values is not None else self.call_ms, q)), 4)

    @property
    def throughput_texts_per_s(self) -> float:
        return round(self.texts / (sum(self.call_ms) / 1000), 2)


def time_batch1(bundle: Bundle, texts: list[str], warmup: int) -> Timings:
    """`bundle.predict([text])` for each text, interleaved with `session.run` on its pre-tokenised input.

    Both run on the same session, one right after the other, alternating which goes first, so
    a noisy neighbour or a cold cache hits both alike; the difference is the runtime's own cost
    (tokenising, building arrays, softmax, top-k, result objects).
    """
    feeds = [bundle.encode([text]) for text in texts]  # what a user who tokenised ahead would pass
    session = bundle.session
    for text, feed in zip(texts[:warmup], feeds[:warmup], strict=True):
        bundle.predict([text])
        session.run(None, feed)
    call_ms, raw_ms, tokenize_ms, predicted = [], [], [], []
    clock = time.perf_counter
    for index, (text, feed) in enumerate(zip(texts, feeds, strict=True)):
        if index % 2:
            started = clock()
            session.run(None, feed)
            raw_ms.append((clock() - started) * 1000)
        started = clock()
        top = bundle.predict([text])
        call_ms.append((clock() - started) * 1000)
        if not index % 2:
            started = clock()
            session.run(None, feed)
            raw_ms.append((clock() - started) * 1000)
            # The share of the overhead that is tokenising's, with caches as cold as predict finds them.
            started = clock()
            bundle.token_ids(text)
            tokenize_ms.append((clock() - started) * 1000)
        predicted.append(top[0][0].label)
    return Timings(call_ms, len(texts), predicted, raw_ms, tokenize_ms)


def time_batches(bundle: Bundle, texts: list[str], batch_size: int, warmup: int) -> Timings:
    """`bundle.predict(chunk)` over consecutive chunks of `batch_size` texts in file order."""
    chunks = [texts[start:start + batch_size] for start in range(0, len(texts), batch_size)]
    for chunk in chunks[:max(1, warmup // batch_size)]:
        bundle.predict(chunk, batch_size=batch_size)
    call_ms, predicted = [], []
    for chunk in chunks:
        started = time.perf_counter()
        top = bundle.predict(chunk, batch_size=batch_size)
        call_ms.append((time.perf_counter() - started) * 1000)
        predicted.extend(row[0].label for row in top)
    return Timings(call_ms, len(texts), predicted)
