"""Quantize's evaluation of a variant: scores by the one metrics definition, batch-1 latency by the one
timing loop, on a real exported graph and real ONNX Runtime sessions."""

from __future__ import annotations

import csv

import numpy
import pytest

from edgetune.export.parity import encode_batches
from edgetune.onnx_session import predict_logits, session_for
from edgetune.quantize.evaluate import evaluate_variant, interleaved_batch1_latency_ms
from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1


@pytest.fixture(scope="module")
def labelled(small_banking77) -> tuple[list[str], list[str]]:
    with open(small_banking77["test"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["category"] for row in rows]


def test_variant_scores_equal_the_runtime_scorer_on_the_same_predictions(tiny_export_dir, labelled):
    from transformers import AutoConfig, AutoTokenizer

    texts, labels = labelled
    label_names = [AutoConfig.from_pretrained(tiny_export_dir).id2label[index]
                   for index in range(len(set(labels)))]
    batches = encode_batches(AutoTokenizer.from_pretrained(tiny_export_dir), texts, 8, 64)
    path = tiny_export_dir / "model.onnx"
    session = session_for(path, 1, {})
    evaluation = evaluate_variant("fp32", "the exported graph", path, session, batches,
                                  numpy.array([label_names.index(label) for label in labels]), label_names, [])
    predicted = [label_names[index] for index in predict_logits(session, batches).argmax(-1)]
    assert evaluation.accuracy == pytest.approx(accuracy(labels, predicted))
    assert evaluation.macro_f1 == pytest.approx(macro_f1(labels, predicted))
    runtime_f1 = per_class_f1(labels, predicted)
    assert evaluation.per_class_f1 == {name: round(runtime_f1.get(name, 0.0), 4) for name in label_names}


def test_side_by_side_latency_times_every_real_session(tiny_export_dir, labelled):
    from transformers import AutoTokenizer

    texts, _ = labelled
    singles = encode_batches(AutoTokenizer.from_pretrained(tiny_export_dir), texts[:12], 1, 64)
    sessions = {name: session_for(tiny_export_dir / "model.onnx", 1, {}) for name in ("a", "b")}
    timings = interleaved_batch1_latency_ms(sessions, singles)
    assert set(timings) == {"a", "b"} and all(0 < p50 <= p90 for p50, p90 in timings.values())
