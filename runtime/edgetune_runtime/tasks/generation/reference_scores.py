"""Scores of a model against reference answers: teacher-forced answer NLL, and ROUGE-L where rouge_score is installed.

The one copy for both packages: the runtime's bench and the toolchain's chat evaluation
(`edgetune.tasks.text_generation.answer_scores`) score answers here. rouge_score is a toolchain
dependency, never the runtime's: without it `rouge_l_scorer` returns None and callers skip ROUGE-L.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy


def answer_nll(logits: numpy.ndarray, prompt_length: int, answer_ids: Sequence[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of `answer_ids` and their count, given the logits of prompt + answer
    (the logits at position i predict token i + 1, so only the answer's own tokens are scored)."""
    targets = numpy.asarray(answer_ids, dtype=numpy.int64)
    predicting = logits[prompt_length - 1:prompt_length - 1 + len(targets)].astype(numpy.float64)
    shifted = predicting - predicting.max(axis=1, keepdims=True)
    log_normaliser = numpy.log(numpy.exp(shifted).sum(axis=1))
    return float((log_normaliser - shifted[numpy.arange(len(targets)), targets]).sum()), len(targets)


@lru_cache(maxsize=1)
def rouge_l_scorer() -> Callable[[str, str], float] | None:
    """`score(reference, answer)` -> ROUGE-L F-measure (lower-cased, stemmed words); None without rouge_score."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        return None
    # Stemming, as the summarisation papers report ROUGE: "orders" and "order" are the same word.
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return lambda reference, answer: float(scorer.score(reference, answer)["rougeL"].fmeasure)
