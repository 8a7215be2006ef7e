"""Classification metrics from logits, with numpy only (no scikit-learn dependency)."""

from __future__ import annotations

import numpy


def confusion_matrix(true_ids: numpy.ndarray, predicted_ids: numpy.ndarray, num_labels: int) -> numpy.ndarray:
    """Rows are true labels, columns predicted labels."""
    matrix = numpy.zeros((num_labels, num_labels), dtype=numpy.int64)
    numpy.add.at(matrix, (true_ids, predicted_ids), 1)
    return matrix


def summary_metrics(true_ids: numpy.ndarray, predicted_ids: numpy.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1: the two numbers tracked during training."""
    matrix = confusion_matrix(true_ids, predicted_ids, num_labels)
    f1 = _per_class(matrix)[2]
    present = matrix.sum(axis=1) > 0  # a class absent from this split has no defined F1
    return {"accuracy": float(numpy.trace(matrix) / max(1, matrix.sum())),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0}


def _per_class(matrix: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    true_positive = numpy.diag(matrix).astype(numpy.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = numpy.divide(true_positive, predicted, out=numpy.zeros_like(true_positive), where=predicted > 0)
    recall = numpy.divide(true_positive, actual, out=numpy.zeros_like(true_positive), where=actual > 0)
    denominator = precision + recall
    f1 = numpy.divide(2 * precision * recall, denominator, out=numpy.zeros_like(true_positive), where=denominator > 0)
    return precision, recall, f1


def classification_report(logits: numpy.ndarray, true_ids: numpy.ndarray, label_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    predicted_ids = logits.argmax(axis=-1)
    matrix = confusion_matrix(true_ids, predicted_ids, len(label_names))
    precision, recall, f1 = _per_class(matrix)
    support = matrix.sum(axis=1)
    return {
        **summary_metrics(true_ids, predicted_ids, len(label_names)),
        "examples": int(len(true_ids)),
        "per_class": {
            name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": matrix.tolist(),
    }
