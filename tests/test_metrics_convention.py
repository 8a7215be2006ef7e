"""One metrics definition: the toolchain (scikit-learn) and the runtime's own scorer agree, on every case."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score

from edgetune.finetune.metrics import classification_report, confusion_matrix, summary_metrics
from edgetune_runtime.scoring import accuracy, macro_f1, per_class_f1


def test_a_label_only_predicted_counts_on_both_sides():
    """The fault: the toolchain averaged over labels in the truth (a, b: 0.833), the runtime over
    truth and predictions (a, b, c: 0.556) on the same predictions. Both now say 0.556."""
    names = ["a", "b", "c"]
    expected, predicted = ["a", "b", "b"], ["a", "b", "c"]
    true_ids = numpy.array([names.index(label) for label in expected])
    predicted_ids = numpy.array([names.index(label) for label in predicted])
    toolchain = summary_metrics(true_ids, predicted_ids, len(names))
    assert toolchain["macro_f1"] == pytest.approx(5 / 9) == macro_f1(expected, predicted)
    assert toolchain["accuracy"] == pytest.approx(2 / 3) == accuracy(expected, predicted)
    report = classification_report(numpy.eye(len(names))[predicted_ids], true_ids, names)
    assert report["macro_f1"] == pytest.approx(5 / 9)
    assert {name: values["f1"] for name, values in report["per_class"].items()} == \
        {name: round(f1, 4) for name, f1 in per_class_f1(expected, predicted).items()}
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert confusion_matrix(true_ids, predicted_ids, 4).shape == (4, 4)  # a label no row has still gets a line


labelled_pairs = st.integers(min_value=1, max_value=40).flatmap(lambda size: st.tuples(
    st.lists(st.sampled_from("abcdef"), min_size=size, max_size=size),
    st.lists(st.sampled_from("abcdefgh"), min_size=size, max_size=size)))  # g, h: only ever predicted


@settings(max_examples=300, deadline=None)
@given(labelled_pairs)
def test_runtime_scorer_equals_scikit_learn(pair):
    expected, predicted = pair
    assert accuracy(expected, predicted) == pytest.approx(accuracy_score(expected, predicted))
    assert macro_f1(expected, predicted) == pytest.approx(f1_score(expected, predicted, average="macro",
                                                                   zero_division=0))
    labels = sorted(set(expected) | set(predicted))
    sklearn_f1 = f1_score(expected, predicted, labels=labels, average=None, zero_division=0)
    assert per_class_f1(expected, predicted) == pytest.approx(dict(zip(labels, sklearn_f1, strict=True)))
    # The toolchain's ids-based metrics agree with the runtime's string-based ones.
    names = sorted(set("abcdefgh"))
    toolchain = summary_metrics(numpy.array([names.index(label) for label in expected]),
                                numpy.array([names.index(label) for label in predicted]), len(names))
    assert toolchain["macro_f1"] == pytest.approx(macro_f1(expected, predicted))


def test_only_expected_and_only_predicted_labels_score_zero():
    f1 = per_class_f1(["a", "a", "b"], ["a", "c", "c"])
    assert f1 == {"a": pytest.approx(2 / 3), "b": 0.0, "c": 0.0}
    assert macro_f1([], []) == 0.0 and per_class_f1([], []) == {}
