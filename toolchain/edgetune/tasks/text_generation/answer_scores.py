"""Scores of one model on one conversation, from prompt ids, generated ids and logits alone.

PyTorch models and ONNX artifacts feed the same functions here (see `chat_models`), so a difference
between them in the report is a difference of the models, never of the scoring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy

from edgetune.data.chat import ChatExample
from edgetune.errors import DataError
from edgetune_runtime.tasks.generation.reference_scores import answer_nll, rouge_l_scorer

PLACEHOLDER = re.compile(r"\{\{[^{}]+\}\}")
"""The Bitext house style for details the agent fills in: `{{Order Number}}`."""


def has_placeholder(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


@dataclass(frozen=True)
class EncodedConversation:
    """A conversation under a model's chat template: what the model reads, then the reference answer."""

    prompt_ids: list[int]
    """System and user turns and the assistant header (`add_generation_prompt`)."""
    reference_ids: list[int]
    """The reference answer's tokens up to and including the end-of-turn token: what the model should write."""


def encode_conversation(tokenizer, example: ChatExample, stop_ids: tuple[int, ...],
                        context_length: int) -> EncodedConversation:
    """Token ids of `example` split at the assistant's answer; the answer is cut to fit the context."""
    messages = [dict(message) for message in example.messages]
    prompt_ids = list(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
    full_ids = list(tokenizer.apply_chat_template(messages, tokenize=True))
    where = f"{example.source}, row {example.row}"
    if full_ids[:len(prompt_ids)] != prompt_ids:
        raise DataError(f"{where}: the chat template renders the prompt differently with and without the answer, "
                        f"so the answer's tokens cannot be told apart; use a model whose template appends turns")
    reference_ids = full_ids[len(prompt_ids):]
    # The template may add a newline after the end-of-turn token: the model is not asked to write it.
    ends = [index for index, token in enumerate(reference_ids) if token in stop_ids]
    if ends:
        reference_ids = reference_ids[:ends[-1] + 1]
    if len(prompt_ids) >= context_length:
        raise DataError(f"{where}: the prompt is {len(prompt_ids)} tokens, beyond the model's context of "
                        f"{context_length}; shorten it or drop the row")
    return EncodedConversation(prompt_ids, reference_ids[:context_length - len(prompt_ids)])


def reference_nll(logits: numpy.ndarray, encoded: EncodedConversation) -> tuple[float, int]:
    """Summed negative log-likelihood of the reference answer's tokens and their count (teacher-forced).

    `logits` are those of `prompt_ids + reference_ids`; the logits at position i predict token i + 1.
    """
    return answer_nll(logits, len(encoded.prompt_ids), encoded.reference_ids)


def rouge_l(reference: str, answer: str) -> float:
    """ROUGE-L F-measure of `answer` against `reference` (rouge_score; lower-cased, stemmed words)."""
    scorer = rouge_l_scorer()
    if scorer is None:
        raise DataError("ROUGE-L needs the rouge-score package; install edgetune with its dependencies")
    return scorer(reference, answer)


@dataclass(frozen=True)
class AnswerScores:
    """What one model did on one conversation."""

    answer: str
    answer_tokens: int
    """Generated tokens, the end-of-turn token not counted."""
    answer_words: int
    rouge_l: float
    placeholder: bool
    reference_nll: float
    reference_tokens: int


def score_answer(tokenizer, encoded: EncodedConversation, generated_ids: list[int], logits: numpy.ndarray,
                 reference: str, stop_ids: tuple[int, ...]) -> AnswerScores:
    """Every per-answer figure of the report from the model's three outputs."""
    answer_ids = generated_ids[:-1] if generated_ids and generated_ids[-1] in stop_ids else generated_ids
    answer = tokenizer.decode(answer_ids, skip_special_tokens=True).strip()
    nll, count = reference_nll(logits, encoded)
    return AnswerScores(answer=answer, answer_tokens=len(answer_ids), answer_words=len(answer.split()),
                        rouge_l=rouge_l(reference, answer), placeholder=has_placeholder(answer),
                        reference_nll=nll, reference_tokens=count)
