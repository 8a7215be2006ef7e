"""Classification metrics from label ids, computed by scikit-learn: the one definition both packages follow.

Macro-F1 averages over the labels that occur as expected or as predicted (scikit-learn's default);
a label predicted but never expected counts with F1 0, so a model is not rewarded for inventing
classes. The runtime's torch-free scorer (`edgetune_runtime.scoring`) is tested equal to this.
"""

from __future__ import annotations

import numpy


def confusion_matrix(true_ids: numpy.ndarray, predicted_ids: numpy.ndarray, num_labels: int) -> numpy.ndarray:
    """Rows are true labels, columns predicted labels."""
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    return sklearn_confusion_matrix(true_ids, predicted_ids, labels=numpy.arange(num_labels)).astype(numpy.int64)


def summary_metrics(true_ids: numpy.ndarray, predicted_ids: numpy.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1: the two numbers tracked during training."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(true_ids) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    return {"accuracy": float(accuracy_score(true_ids, predicted_ids)),
            "macro_f1": float(f1_score(true_ids, predicted_ids, average="macro", zero_division=0))}


def classification_report(logits: numpy.ndarray, true_ids: numpy.ndarray, label_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support (every label named) and the confusion matrix."""
    from sklearn.metrics import precision_recall_fscore_support

    predicted_ids = logits.argmax(axis=-1)
    every_label = numpy.arange(len(label_names))
    precision, recall, f1, support = precision_recall_fscore_support(true_ids, predicted_ids, labels=every_label,
                                                                     zero_division=0)
    return {
        **summary_metrics(true_ids, predicted_ids, len(label_names)),
        "examples": int(len(true_ids)),
        "per_class": {
            name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": confusion_matrix(true_ids, predicted_ids, len(label_names)).tolist(),
    }
