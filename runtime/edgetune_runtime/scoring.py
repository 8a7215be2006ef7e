"""Accuracy and macro-F1 of predicted labels, without scikit-learn (the runtime ships inside apps)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def accuracy(expected: Sequence[str], predicted: Sequence[str]) -> float:
    if not expected:
        return 0.0
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected)


def macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean F1 over every label that occurs as expected or predicted (scikit-learn's convention)."""
    true_positives = Counter(e for e, p in zip(expected, predicted, strict=True) if e == p)
    expected_counts, predicted_counts = Counter(expected), Counter(predicted)
    labels = set(expected_counts) | set(predicted_counts)
    if not labels:
        return 0.0
    total = 0.0
    for label in labels:
        hits = true_positives[label]
        denominator = expected_counts[label] + predicted_counts[label]
        total += 2 * hits / denominator if denominator else 0.0
    return total / len(labels)
