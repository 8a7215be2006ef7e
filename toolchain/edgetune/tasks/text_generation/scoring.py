"""Scoring a chat model on held-out conversations: token ids through the chat template, and teacher forcing.

Export's parity gate and quantisation's variant table read the same figures from here, so "perplexity"
and "agreement" mean one thing everywhere:
- perplexity: exp of the mean negative log-likelihood of the reference answer's tokens (every token the
  template puts after the generation prompt, `<|im_end|>` included), the prompt's tokens not scored;
- next-token top-1 agreement: the share of those answer positions where two models' argmax agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from edgetune.data.chat import ChatExample
from edgetune.errors import EdgetuneError


@dataclass(frozen=True)
class EncodedConversation:
    """A conversation's ids: `prompt_ids` end with the generation prompt; `ids` go on with the answer."""

    example: ChatExample
    prompt_ids: list[int]
    ids: list[int]

    @property
    def answer_positions(self) -> slice:
        """Logit positions that predict the answer's tokens (position i predicts token i + 1)."""
        return slice(len(self.prompt_ids) - 1, len(self.ids) - 1)

    @property
    def answer_ids(self) -> numpy.ndarray:
        return numpy.asarray(self.ids[len(self.prompt_ids):], dtype=numpy.int64)


def encode_conversations(tokenizer, examples: list[ChatExample], context_length: int) -> list[EncodedConversation]:
    """Ids of each conversation through the model's chat template, its answer cut to fit `context_length`."""
    encoded = []
    for example in examples:
        messages = [dict(message) for message in example.messages]
        prompt_ids = list(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
        ids = list(tokenizer.apply_chat_template(messages, tokenize=True))
        if ids[:len(prompt_ids)] != prompt_ids:
            raise EdgetuneError(f"{example.source}, row {example.row}: the chat template renders the prompt "
                                "differently with and without the answer, so answer tokens cannot be told apart; "
                                "use a model whose template appends each turn")
        if len(prompt_ids) >= context_length:
            raise EdgetuneError(f"{example.source}, row {example.row}: the prompt is {len(prompt_ids)} tokens, not "
                                f"under context_length {context_length}; raise context_length or use shorter "
                                "held-out prompts")
        encoded.append(EncodedConversation(example, prompt_ids, ids[:context_length]))
    return encoded


@dataclass
class TeacherForced:
    """Per conversation: the log-probability of each answer token, and the argmax at each answer position."""

    log_probs: list[numpy.ndarray]
    top1: list[numpy.ndarray]

    @property
    def perplexity(self) -> float:
        return float(numpy.exp(-numpy.concatenate(self.log_probs).mean()))

    def agreement(self, other: TeacherForced) -> float:
        """Share of answer positions where both models predict the same next token."""
        same = sum(int((mine == theirs).sum()) for mine, theirs in zip(self.top1, other.top1, strict=True))
        return same / sum(len(mine) for mine in self.top1)


def answer_scores(logits: numpy.ndarray, conversation: EncodedConversation) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Log-probabilities of the answer tokens and the argmax at their positions, from a sequence's logits."""
    answer_logits = numpy.asarray(logits[conversation.answer_positions], dtype=numpy.float64)
    shifted = answer_logits - answer_logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - numpy.log(numpy.exp(shifted).sum(axis=-1, keepdims=True))
    targets = conversation.answer_ids
    return log_softmax[numpy.arange(len(targets)), targets], answer_logits.argmax(axis=-1)


def teacher_forced_onnx(decoder, conversations: list[EncodedConversation]) -> TeacherForced:
    """Teacher-forced scores of an ONNX decoder (`edgetune_runtime`'s `Decoder`), one pass per conversation."""
    scores = [answer_scores(decoder.sequence_logits(conversation.ids), conversation) for conversation in conversations]
    return TeacherForced([log_probs for log_probs, _ in scores], [top1 for _, top1 in scores])


def teacher_forced_torch(model, conversations: list[EncodedConversation]) -> TeacherForced:
    """The same scores from the PyTorch model the export started from."""
    import torch

    scores = []
    with torch.inference_mode():
        for conversation in conversations:
            logits = model(torch.tensor([conversation.ids])).logits[0].float().numpy()
            scores.append(answer_scores(logits, conversation))
    return TeacherForced([log_probs for log_probs, _ in scores], [top1 for _, top1 in scores])


def spread(items: list, count: int) -> list:
    """`count` items spread over the list: the validation carve is ordered by intent, its head is one intent."""
    step = max(1, len(items) // count)
    return items[::step][:count]
