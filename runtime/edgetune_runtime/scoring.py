"""Accuracy, macro-F1 and per-class F1 of predicted labels, without scikit-learn (the runtime ships inside apps).

scikit-learn's convention, which the toolchain computes with scikit-learn itself: a label counts when
it occurs as expected or as predicted, and an F1 with nothing to divide by is 0. A test checks these
equal `sklearn.metrics` on random cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def accuracy(expected: Sequence[str], predicted: Sequence[str]) -> float:
    if not expected:
        return 0.0
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected)


def per_class_f1(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """F1 of every label that occurs as expected or predicted, sorted by label."""
    true_positives = Counter(e for e, p in zip(expected, predicted, strict=True) if e == p)
    expected_counts, predicted_counts = Counter(expected), Counter(predicted)
    # 2·TP / (expected + predicted) is 2PR / (P + R) without the two divisions that can be 0/0.
    return {label: 2 * true_positives[label] / (expected_counts[label] + predicted_counts[label])
            for label in sorted(set(expected_counts) | set(predicted_counts))}


def macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean F1 over every label that occurs as expected or predicted."""
    f1 = per_class_f1(expected, predicted)
    return sum(f1.values()) / len(f1) if f1 else 0.0
