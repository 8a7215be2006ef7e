"""The one timing loop (`edgetune_runtime.timing`) and the runtime bench's batch-1 timing built on it,
on a real tiny bundle and its real ONNX Runtime session."""

from __future__ import annotations

import csv
import time

import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.latency import time_batch1, time_batches
from edgetune_runtime.timing import interleaved_timings


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_export_dir) -> Bundle:
    output = tmp_path_factory.mktemp("timing_bundle") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=2))
    return Bundle.load(output)


@pytest.fixture(scope="module")
def texts(small_banking77) -> list[str]:
    with open(small_banking77["test"], newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def test_every_contestant_times_every_item_once_in_varying_turns(bundle, texts):
    feeds = [bundle.encode([text]) for text in texts]
    calls: list[tuple[str, int]] = []

    def contestant(name: str):
        def run(index: int) -> None:
            calls.append((name, index))
            bundle.session.run(None, feeds[index])
        return run

    timings = interleaved_timings({name: contestant(name) for name in "abc"}, len(texts), warmup=3, seed=7)
    assert {name: len(values) for name, values in timings.items()} == {"a": len(texts), "b": len(texts),
                                                                        "c": len(texts)}
    assert all(value > 0 for values in timings.values() for value in values)
    warmup, timed = calls[:9], calls[9:]
    assert sorted(warmup) == sorted((name, index) for name in "abc" for index in range(3))
    # Item by item: each index through every contestant before the next index starts.
    assert [index for _, index in timed] == [index for index in range(len(texts)) for _ in range(3)]
    orders = {tuple(name for name, _ in timed[3 * item:3 * item + 3]) for item in range(len(texts))}
    assert len(orders) > 1 and {order[0] for order in orders} == set("abc")
    again: list[tuple[str, int]] = []
    interleaved_timings({name: (lambda index, name=name: again.append((name, index))) for name in "abc"},
                        len(texts), warmup=3, seed=7)
    assert again == calls  # seeded: a rerun takes the same turns


def test_warm_up_calls_are_not_timed(bundle, texts):
    """A contestant whose first calls are slow (as first calls are: buffers, kernels, caches) shows
    none of that slowness in its timings: only the calls after the warm-up count."""
    feed = bundle.encode([texts[0]])
    calls = {"slow start": 0}

    def slow_start(index: int) -> None:
        calls["slow start"] += 1
        if calls["slow start"] <= 4:
            time.sleep(0.05)
        bundle.session.run(None, feed)

    timings = interleaved_timings({"slow start": slow_start}, 6, warmup=4)
    assert calls["slow start"] == 10 and len(timings["slow start"]) == 6
    assert max(timings["slow start"]) < 50
    with_no_warmup = interleaved_timings({"fresh": lambda index: time.sleep(0.05) if index == 0 else None}, 3,
                                         warmup=0)
    assert with_no_warmup["fresh"][0] >= 50 and len(with_no_warmup["fresh"]) == 3


def test_bench_timing_pairs_predict_raw_session_and_tokenizer_on_every_text(bundle, texts):
    timings = time_batch1(bundle, texts, warmup=2)
    assert len(timings.call_ms) == len(timings.raw_ort_ms) == len(timings.tokenize_ms) == len(texts)
    assert timings.predicted == [top[0].label for text in texts for top in bundle.predict([text])]
    batched = time_batches(bundle, texts, 4, warmup=4)
    assert len(batched.call_ms) == -(-len(texts) // 4) and batched.predicted == timings.predicted
