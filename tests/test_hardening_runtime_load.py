"""Hardening, the runtime under load and under strange input.

* 8 threads x 2,000 predictions at once give bit-for-bit the outputs of the same calls run one after another.
* Edge inputs each have a defined result, tested here (and stated in `EDGE_TEXTS` / `REFUSED_ITEMS`):
  empty or blank text -> the prediction of the empty sequence; a 100,000-character text -> truncated
  to the bundle's max_length tokens; emoji, right-to-left text, control characters, zero-width and
  combining characters -> an ordinary prediction; a non-string item -> TypeError naming its index; a
  lone surrogate -> InputError naming its index; a single string instead of a list -> TypeError.
* Hypothesis drives arbitrary Unicode through the text path: it never crashes, every row is a
  probability distribution, one row per text, and a text's result does not depend on its batch companions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import read_banking77
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import InputError

THREADS = 8
PREDICTIONS_PER_THREAD = 2_000
BATCH_PLAN = (1, 32, 7, 64, 1, 3, 16, 1, 48)  # call sizes cycled by every thread: the latency path and batches
COMPANION_TOLERANCE = 1e-5  # padding to a batch's longest text may move float sums in the last bits


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_export_dir) -> Bundle:
    output = tmp_path_factory.mktemp("hardening_load") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(zip=False, ort_format=False, golden_examples=4))
    return Bundle.load(output)


LONG_TEXT = "I lost my card at the station and nobody can help me. " * 1852  # 100,004 characters
EDGE_TEXTS = {
    "empty": "",
    "blank": " \t\n ",
    "100k-characters": LONG_TEXT[:100_000],
    "emoji": "my card 💳 got swallowed 😡😡 by the ATM 🏧",
    "only-emoji": "👩‍👩‍👧‍👦🏳️‍🌈💳",
    "arabic-rtl": "لقد فقدت بطاقتي المصرفية",
    "hebrew-rtl-override": "\u202eכרטיס\u202c card",
    "control-characters": "card\x00\x07\x1b[31m lost\x1b[0m\r\n\x7f",
    "zero-width-and-bom": "\ufeffcard\u200b\u200d lost\u2060",
    "combining-marks": "e\u0301" * 500,
    "chinese": "我的卡丢了",
    "mixed-scripts": "carte perdue / Karte verloren / カードを失くした",
}


def _texts() -> list[str]:
    # The odd texts ride along with real ones; 10,000 characters (still truncated) stand in for the
    # 100,000-character text, whose tokenisation alone would cost a second a thread on a small CPU.
    odd = [text if name != "100k-characters" else text[:10_000] for name, text in EDGE_TEXTS.items()]
    real = [row["text"] for row in read_banking77("test")]
    return (odd + real)[:PREDICTIONS_PER_THREAD]


def _plan(thread: int, texts: list[str]) -> list[list[int]]:
    """The calls one thread makes: every text once, in a thread-specific order, in mixed batch sizes."""
    order = numpy.random.default_rng(thread).permutation(len(texts)).tolist()
    calls, start, step = [], 0, 0
    while start < len(order):
        size = BATCH_PLAN[(step + thread) % len(BATCH_PLAN)]
        calls.append(order[start:start + size])
        start, step = start + size, step + 1
    return calls


def _run_plan(bundle: Bundle, texts: list[str], calls: list[list[int]]) -> list[numpy.ndarray]:
    return [bundle.predict_proba([texts[i] for i in call]) for call in calls]


def test_eight_threads_give_exactly_the_sequential_outputs(bundle):
    # One intra-op thread per call, as a server running requests on many threads would configure it.
    bundle = Bundle.load(bundle.directory, intra_op_threads=1)
    texts = _texts()
    plans = [_plan(thread, texts) for thread in range(THREADS)]
    sequential = [_run_plan(bundle, texts, plan) for plan in plans]

    concurrent: list[list[numpy.ndarray] | None] = [None] * THREADS
    failures: list[BaseException] = []
    start_together = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        try:
            start_together.wait()
            concurrent[thread] = _run_plan(bundle, texts, plans[thread])
        except BaseException as error:  # noqa: BLE001 - reported below, with the thread it came from
            failures.append(error)

    workers = [threading.Thread(target=worker, args=(thread,)) for thread in range(THREADS)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=300)
    assert not failures, failures
    checked = 0
    for thread in range(THREADS):
        assert len(concurrent[thread]) == len(sequential[thread])
        for call, expected, got in zip(plans[thread], sequential[thread], concurrent[thread], strict=True):
            assert numpy.array_equal(got, expected), f"thread {thread}, call of {len(call)} texts"
            checked += len(call)
    assert checked == THREADS * PREDICTIONS_PER_THREAD == 16_000

    # Across threads each text met different batch companions; its answer must not depend on them.
    by_text = numpy.empty((THREADS, len(texts), len(bundle.labels)), dtype=numpy.float32)
    for thread in range(THREADS):
        for call, rows in zip(plans[thread], concurrent[thread], strict=True):
            by_text[thread, call] = rows
    assert numpy.abs(by_text - by_text[0]).max() <= COMPANION_TOLERANCE
    assert (by_text.argmax(-1) == by_text[0].argmax(-1)).all()


def test_one_bundle_predicting_and_verifying_from_many_threads(bundle):
    """`predict` with top_k, `verify` and encoding interleaved from several threads, no shared-state damage."""
    expected = bundle.predict(["I lost my card"], top_k=2)
    results, failures = [], []

    def worker() -> None:
        try:
            for _ in range(25):
                results.append((bundle.predict(["I lost my card"], top_k=2), bundle.verify().passed))
        except BaseException as error:  # noqa: BLE001
            failures.append(error)

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=300)
    assert not failures and len(results) == 100
    assert all(prediction == expected and passed for prediction, passed in results)


@pytest.mark.parametrize("name", list(EDGE_TEXTS))
def test_edge_text_gets_a_prediction(bundle, name):
    text = EDGE_TEXTS[name]
    alone = bundle.predict_proba([text])
    with_companions = bundle.predict_proba(["I lost my card", text, "hi"])
    assert alone.shape == (1, len(bundle.labels)) and numpy.isfinite(alone).all()
    assert alone.sum() == pytest.approx(1.0, abs=1e-5)
    assert numpy.abs(with_companions[1] - alone[0]).max() <= COMPANION_TOLERANCE
    [[top]] = bundle.predict([text])
    assert top.label == bundle.labels[int(alone.argmax())]


def test_empty_and_blank_texts_are_the_empty_sequence(bundle):
    rows = bundle.predict_proba(["", " ", "\t\n", "\u3000"])
    assert numpy.abs(rows - rows[0]).max() <= COMPANION_TOLERANCE


def test_a_100k_character_text_is_truncated_to_max_length(bundle):
    text = EDGE_TEXTS["100k-characters"]
    assert len(text) == 100_000
    assert len(bundle.tokenizer.encode(text).ids) == bundle.max_length
    # Whatever lies past max_length tokens cannot matter: a shorter cut that is still over the limit agrees.
    shorter = text[:5_000]
    assert len(bundle.tokenizer.encode(shorter).ids) == bundle.max_length
    assert numpy.abs(bundle.predict_proba([text]) - bundle.predict_proba([shorter])).max() <= 1e-6


REFUSED_ITEMS = {
    "none": (None, TypeError, "item 1 is NoneType, not text"),
    "integer": (42, TypeError, "item 1 is int, not text"),
    "float-nan": (float("nan"), TypeError, "item 1 is float, not text"),
    "bytes": (b"I lost my card", TypeError, "item 1 is bytes, not text"),
    "nested-list": (["I lost my card"], TypeError, "item 1 is list, not text"),
    "dict": ({"text": "card"}, TypeError, "item 1 is dict, not text"),
    "lone-surrogate": ("card \udcff lost", InputError, "item 1: character 5 is a lone surrogate"),
    "lone-high-surrogate": ("\ud800", InputError, "item 1: character 0 is a lone surrogate"),
}


@pytest.mark.parametrize("name", list(REFUSED_ITEMS))
def test_bad_item_in_a_batch_is_a_clear_error_naming_its_index(bundle, name):
    item, error, message = REFUSED_ITEMS[name]
    for call in (bundle.predict, bundle.predict_proba):
        with pytest.raises(error, match=message):
            call(["I lost my card", item, "hi"])
    # The bundle is unharmed afterwards.
    assert bundle.predict(["I lost my card"]) == bundle.predict(["I lost my card"])


def test_sequence_types_and_argument_errors(bundle):
    texts = ["I lost my card", "", "hi 💳"]
    expected = bundle.predict_proba(texts)
    for same in (tuple(texts), numpy.array(texts), (text for text in texts)):
        assert numpy.array_equal(bundle.predict_proba(same), expected)
    assert bundle.predict_proba([]).shape == (0, len(bundle.labels)) and bundle.predict([]) == []
    with pytest.raises(TypeError, match="not a single string"):
        bundle.predict("I lost my card")
    with pytest.raises(ValueError, match="top_k must be between 1 and"):
        bundle.predict(texts, top_k=0)
    with pytest.raises(ValueError, match="top_k must be between 1 and"):
        bundle.predict(texts, top_k=len(bundle.labels) + 1)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        bundle.predict(texts, batch_size=0)


def test_edge_inputs_through_the_device_command_line(bundle, tmp_path):
    """Real processes: odd texts print predictions; bytes that are not UTF-8 are one `error:` line, exit 2."""
    runtime = [sys.executable, "-m", "edgetune_runtime.cli"]
    odd = ["", EDGE_TEXTS["emoji"], EDGE_TEXTS["arabic-rtl"], "card\x07\x1b[31m", "x" * 100_000]
    result = subprocess.run([*runtime, "predict", str(bundle.directory), *odd], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["text"] for line in lines] == odd and all(line["predictions"] for line in lines)

    undecodable = subprocess.run([*runtime, "predict", str(bundle.directory), b"caf\xe9 card"],
                                 capture_output=True, timeout=120)
    stderr = undecodable.stderr.decode()
    assert undecodable.returncode == 2 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines() == [
        "error: item 0: character 3 is a lone surrogate '\\udce9', not valid Unicode text; decode the input as "
        "UTF-8 (errors='replace' turns bad bytes into U+FFFD)"]

    texts_file = tmp_path / "texts.jsonl"
    texts_file.write_text('{"text": "I lost my card"}\n{"text": "bad \\ud800 escape"}\n')
    from_file = subprocess.run([*runtime, "predict", str(bundle.directory), "--input", str(texts_file)],
                               capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 2 and "Traceback" not in from_file.stderr, from_file.stderr
    error_lines = [line for line in from_file.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "lone surrogate" in error_lines[0], from_file.stderr


_FAST = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
_UNICODE_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)  # every code point but surrogates


@_FAST
@given(texts=st.lists(_UNICODE_TEXT, max_size=8), batch_size=st.integers(1, 9))
def test_property_any_unicode_gives_one_distribution_per_text(bundle, texts, batch_size):
    probabilities = bundle.predict_proba(texts, batch_size=batch_size)
    assert probabilities.shape == (len(texts), len(bundle.labels))
    assert numpy.isfinite(probabilities).all() and (probabilities >= 0).all() and (probabilities <= 1).all()
    if texts:
        numpy.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    predictions = bundle.predict(texts, batch_size=batch_size)
    assert len(predictions) == len(texts)
    assert [p[0].probability for p in predictions] == pytest.approx(probabilities.max(axis=1).tolist(), abs=1e-6)


@_FAST
@given(texts=st.lists(_UNICODE_TEXT, min_size=1, max_size=6))
def test_property_a_text_answers_the_same_whatever_its_batch_companions(bundle, texts):
    together = bundle.predict_proba(texts)
    alone = numpy.concatenate([bundle.predict_proba([text]) for text in texts])
    reversed_order = bundle.predict_proba(texts[::-1])[::-1]
    assert numpy.abs(together - alone).max() <= COMPANION_TOLERANCE
    assert numpy.abs(reversed_order - together).max() <= COMPANION_TOLERANCE


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(texts=st.lists(st.one_of(st.text(max_size=50), st.text(alphabet=st.characters(categories=["Cs"]), min_size=1,
                                                                     max_size=3), st.none(), st.integers(),
                                st.binary(max_size=10)), max_size=5))
def test_property_anything_in_a_list_is_a_result_or_a_clear_error(bundle, texts):
    expected = None  # the first bad item decides: (index, error type)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            expected = (index, TypeError)
            break
        if any(0xD800 <= ord(character) <= 0xDFFF for character in text):
            expected = (index, InputError)
            break
    if expected is None:
        assert bundle.predict_proba(texts).shape == (len(texts), len(bundle.labels))
        return
    index, error_type = expected
    with pytest.raises(error_type, match=f"^item {index}[: ]"):
        bundle.predict_proba(texts)
