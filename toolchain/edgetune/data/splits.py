"""Stratified validation carve-out with a fixed seed."""

from __future__ import annotations

import random
from collections import defaultdict


def stratified_holdout(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices into (kept, held_out), holding out `fraction` of every class.

    A class with a single example stays whole in the kept part: it cannot be both learned and
    validated. Indices come back sorted so the original file order is preserved.
    """
    rows_by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        rows_by_label[label].append(index)
    generator = random.Random(seed)
    held_out: list[int] = []
    for label in sorted(rows_by_label):
        rows = rows_by_label[label]
        if len(rows) < 2:
            continue
        count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        held_out.extend(generator.sample(rows, count))
    held_set = set(held_out)
    kept = [index for index in range(len(labels)) if index not in held_set]
    return kept, sorted(held_out)
