"""The Pareto front of accuracy against latency: the settings no other setting beats on both."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the (accuracy, latency) points that no other point dominates, by increasing latency.

    A point is dominated when another has accuracy at least as high and latency at least as low,
    and is strictly better in one of them. Points missing either value are never on the front.
    """
    usable = [(index, accuracy, latency) for index, (accuracy, latency) in enumerate(points)
              if accuracy is not None and latency is not None]
    front = []
    for index, accuracy, latency in usable:
        dominated = any(other_accuracy >= accuracy and other_latency <= latency
                        and (other_accuracy > accuracy or other_latency < latency)
                        for _, other_accuracy, other_latency in usable)
        if not dominated:
            front.append(index)
    return sorted(front, key=lambda index: (points[index][1], -points[index][0]))
