"""Choosing the next token from its logits: greedy, or sampled with temperature, top-k and top-p.

Each generation call builds its own `TokenChooser` with its own numpy `Generator`, so a seeded call
gives the same tokens whatever other threads do. Repetition penalty follows transformers' rule
(CTRL, Keskar et al. 2019): the logit of every token already in the sequence, prompt included, is
divided by the penalty when positive and multiplied by it when negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from edgetune_runtime.errors import InputError

MAX_TEMPERATURE = 100.0
MAX_REPETITION_PENALTY = 10.0


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked; `temperature` 0 means greedy (the other settings then only shape nothing)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    """0 keeps every token."""
    repetition_penalty: float = 1.0

    def check(self, where: str) -> Sampling:
        """Self, or an `InputError` naming `where` and the setting out of range."""
        problems = []
        if not _is_number(self.temperature) or not 0 <= self.temperature <= MAX_TEMPERATURE:
            problems.append(f"temperature {self.temperature!r} must be from 0 (greedy) to {MAX_TEMPERATURE:g}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            problems.append(f"top_p {self.top_p!r} must be above 0 and at most 1")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            problems.append(f"top_k {self.top_k!r} must be a whole number >= 0 (0: no limit)")
        if not _is_number(self.repetition_penalty) or not 0 < self.repetition_penalty <= MAX_REPETITION_PENALTY:
            problems.append(f"repetition_penalty {self.repetition_penalty!r} must be above 0 and at most "
                            f"{MAX_REPETITION_PENALTY:g} (1: none)")
        if problems:
            raise InputError(f"{where}: {problems[0]}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and numpy.isfinite(value)


class TokenChooser:
    """Picks each next token for one generation; remembers the sequence for the repetition penalty."""

    def __init__(self, sampling: Sampling, context_ids: list[int], seed: int | None, *,
                 banned_until: int = 0, banned_ids: tuple[int, ...] = ()) -> None:
        self.sampling = sampling
        self._seen = set(context_ids)
        self._random = numpy.random.default_rng(seed)
        # `min_new_tokens` (as transformers and vLLM define it): the stop tokens cannot be chosen this early.
        self._banned_until = banned_until
        self._banned = numpy.asarray(banned_ids, dtype=numpy.int64)
        self._chosen = 0

    def __call__(self, logits: numpy.ndarray) -> int:
        scores = numpy.array(logits, dtype=numpy.float64)  # a copy: the cache's output stays untouched
        if self._chosen < self._banned_until and self._banned.size:
            scores[self._banned[self._banned < len(scores)]] = -numpy.inf
        self._chosen += 1
        if self.sampling.repetition_penalty != 1.0 and self._seen:
            seen = numpy.fromiter(self._seen, dtype=numpy.int64)
            seen = seen[seen < len(scores)]
            values = scores[seen]
            scores[seen] = numpy.where(values > 0, values / self.sampling.repetition_penalty,
                                       values * self.sampling.repetition_penalty)
        token = int(numpy.argmax(scores)) if self.sampling.greedy else self._sample(scores)
        self._seen.add(token)
        return token

    def _sample(self, scores: numpy.ndarray) -> int:
        scores = scores / self.sampling.temperature
        if 0 < self.sampling.top_k < len(scores):
            threshold = numpy.partition(scores, -self.sampling.top_k)[-self.sampling.top_k]
            scores[scores < threshold] = -numpy.inf
        probabilities = numpy.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        if self.sampling.top_p < 1.0:
            # Keep the smallest set of most probable tokens whose mass reaches top_p (nucleus sampling).
            order = numpy.argsort(-probabilities, kind="stable")
            cumulative = numpy.cumsum(probabilities[order])
            keep = order[:int(numpy.searchsorted(cumulative, self.sampling.top_p)) + 1]
            kept = numpy.zeros_like(probabilities)
            kept[keep] = probabilities[keep]
            probabilities = kept / kept.sum()
        return int(self._random.choice(len(probabilities), p=probabilities))
