"""Scores of a model's answers: teacher-forced answer NLL, ROUGE-L where rouge_score is installed, and intent
fidelity as a judge bundle (a classifier of answers into intents) reads them.

The one copy for both packages: the runtime's bench and the toolchain's chat evaluation
(`edgetune.tasks.text_generation.answer_scores`, its intent judge) score answers here. rouge_score is a toolchain
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


def judged_intents(judge, texts: Sequence[str]) -> list[str | None]:
    """The intent `judge` (a classification bundle) reads in each text; None for an empty text (no answer serves
    no intent)."""
    spoken = [index for index, text in enumerate(texts) if text.strip()]
    judged: list[str | None] = [None] * len(texts)
    if spoken:
        for index, prediction in zip(spoken, judge.predict([texts[i] for i in spoken]), strict=True):
            judged[index] = prediction[0].label
    return judged


def fidelity_share(judged: Sequence[str | None], intents: Sequence[str]) -> float:
    """Share of answers whose judged intent is the prompt's intent (an unjudged answer counts as wrong)."""
    if len(judged) != len(intents):
        raise ValueError(f"{len(judged)} judged intents for {len(intents)} prompts")
    if not intents:
        return float("nan")
    return sum(verdict == intent for verdict, intent in zip(judged, intents, strict=True)) / len(intents)
