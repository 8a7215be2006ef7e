"""What a dataset looks like before anyone trains on it: sizes, balance, lengths, duplicates, leakage."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import numpy

from edgetune.data.load import LabelledData, TextSplit

_SPACES = re.compile(r"\s+")
_EXAMPLES_SHOWN = 5


def _normalised(text: str) -> str:
    """Case- and whitespace-insensitive form, so 'Hi  there' and 'hi there' count as duplicates."""
    return _SPACES.sub(" ", text.strip().lower())


def build_data_report(data: LabelledData, count_tokens: Callable[[list[str]], list[int]] | None = None,
                      max_length: int | None = None) -> dict:
    """A JSON-ready report; lengths are in tokens when `count_tokens` is given, else in words."""
    length_unit = "tokens" if count_tokens else "words"
    count = count_tokens or (lambda texts: [len(text.split()) for text in texts])
    report: dict = {"labels": data.label_names, "length_unit": length_unit, "notes": list(data.notes), "splits": {}}
    for split in data.splits():
        report["splits"][split.name] = _split_report(split, count, max_length)
    report["train_duplicates"] = _duplicates(data.train)
    train_texts = {_normalised(text) for text in data.train.texts}
    report["overlap_with_train"] = {
        split.name: _overlap(split, train_texts) for split in (data.validation, data.test) if split is not None
    }
    return report


def _split_report(split: TextSplit, count: Callable[[list[str]], list[int]], max_length: int | None) -> dict:
    class_counts = Counter(split.labels)
    lengths = numpy.asarray(count(split.texts))
    percentiles = numpy.percentile(lengths, [50, 90, 95, 99]).round(1).tolist()
    report = {
        "source": split.source,
        "rows": len(split),
        "classes": len(class_counts),
        "class_counts": dict(sorted(class_counts.items())),
        "imbalance_ratio": round(max(class_counts.values()) / min(class_counts.values()), 2),
        "length": dict(zip(("p50", "p90", "p95", "p99"), percentiles, strict=True)) | {"max": int(lengths.max())},
    }
    if max_length is not None:
        report["truncated_rows"] = int((lengths > max_length).sum())
    return report


def _duplicates(split: TextSplit) -> dict:
    labels_by_text: dict[str, set[str]] = {}
    repeated = 0
    for text, label in zip(split.texts, split.labels, strict=True):
        key = _normalised(text)
        if key in labels_by_text:
            repeated += 1
        labels_by_text.setdefault(key, set()).add(label)
    conflicting = [text for text, labels in labels_by_text.items() if len(labels) > 1]
    return {"repeated_rows": repeated, "texts_with_conflicting_labels": len(conflicting),
            "conflicting_examples": conflicting[:_EXAMPLES_SHOWN]}


def _overlap(split: TextSplit, train_texts: set[str]) -> dict:
    shared = [text for text in split.texts if _normalised(text) in train_texts]
    return {"rows_also_in_train": len(shared), "fraction": round(len(shared) / max(1, len(split)), 4),
            "examples": shared[:_EXAMPLES_SHOWN]}


def format_data_report(report: dict) -> str:
    """A plain-text table for the terminal."""
    unit = report["length_unit"]
    lines = [f"{'split':<11}{'rows':>8}{'classes':>9}{'imbalance':>11}   length in {unit} p50/p90/p99/max  source"]
    for name, split in report["splits"].items():
        length = split["length"]
        lines.append(
            f"{name:<11}{split['rows']:>8}{split['classes']:>9}{split['imbalance_ratio']:>10.2f}x   "
            f"{length['p50']:>6g}/{length['p90']:g}/{length['p99']:g}/{length['max']:<14}  {split['source']}"
        )
        if split.get("truncated_rows"):
            lines.append(f"{'':11}{split['truncated_rows']} rows longer than max_length will be truncated")
    duplicates = report["train_duplicates"]
    lines.append(f"train duplicates: {duplicates['repeated_rows']} repeated rows, "
                 f"{duplicates['texts_with_conflicting_labels']} texts with conflicting labels")
    for name, overlap in report["overlap_with_train"].items():
        lines.append(f"{name} rows also in train (leakage): {overlap['rows_also_in_train']} "
                     f"({overlap['fraction']:.1%})")
    lines.extend(f"note: {note}" for note in report["notes"])
    return "\n".join(lines)
