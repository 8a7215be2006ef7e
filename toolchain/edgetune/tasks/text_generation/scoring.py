"""Teacher-forced scores of a chat model on held-out conversations: perplexity and next-token agreement.

Export's parity report and quantisation's variant table read their figures here, and the encoding and
the negative log-likelihood are evaluation's own (`answer_scores`), so "perplexity" means one thing in
every stage: exp of the mean negative log-likelihood of the reference answer's tokens up to its
end-of-turn token, the prompt not scored. Next-token top-1 agreement is the share of those answer
positions where two models' argmax agree. Any model with `sequence_logits(ids)` is scored: the
runtime's `Decoder`, or `chat_models`' PyTorch and ONNX models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from edgetune.data.chat import ChatExample
from edgetune.tasks.text_generation.answer_scores import EncodedConversation, encode_conversation, reference_nll


@dataclass(frozen=True)
class HeldOutConversation:
    """A held-out conversation and its ids under the model's chat template."""

    example: ChatExample
    encoded: EncodedConversation

    @property
    def prompt_ids(self) -> list[int]:
        return self.encoded.prompt_ids

    @property
    def ids(self) -> list[int]:
        """Prompt and reference answer: what teacher forcing feeds."""
        return self.encoded.prompt_ids + self.encoded.reference_ids


def encode_conversations(tokenizer, examples: list[ChatExample], stop_ids: tuple[int, ...], context_length: int
                         ) -> list[HeldOutConversation]:
    return [HeldOutConversation(example, encode_conversation(tokenizer, example, stop_ids, context_length))
            for example in examples]


@dataclass
class TeacherForced:
    """Summed answer-token NLL and token count, and per conversation the argmax at each answer position."""

    nll: float
    tokens: int
    top1: list[numpy.ndarray]

    @property
    def perplexity(self) -> float:
        mean = self.nll / self.tokens
        return math.exp(mean) if mean < 700 else float("inf")  # exp overflows past ~709: a broken model

    def agreement(self, other: TeacherForced) -> float:
        """Share of answer positions where both models predict the same next token."""
        same = sum(int((mine == theirs).sum()) for mine, theirs in zip(self.top1, other.top1, strict=True))
        return same / sum(len(mine) for mine in self.top1)


def teacher_forced(model, conversations: list[HeldOutConversation]) -> TeacherForced:
    """One teacher-forced pass per conversation through `model.sequence_logits`."""
    nll, tokens, top1 = 0.0, 0, []
    for conversation in conversations:
        logits = model.sequence_logits(conversation.ids)
        conversation_nll, count = reference_nll(logits, conversation.encoded)
        start = len(conversation.prompt_ids) - 1  # the logits at position i predict token i + 1
        nll, tokens = nll + conversation_nll, tokens + count
        top1.append(numpy.asarray(logits[start:start + count]).argmax(axis=-1))
    return TeacherForced(nll, tokens, top1)


def spread(items: list, count: int) -> list:
    """`count` items spread over the list: a split carved per intent lists its intents in runs."""
    step = max(1, len(items) // count)
    return items[::step][:count]
