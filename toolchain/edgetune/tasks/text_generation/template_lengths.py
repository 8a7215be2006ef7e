"""Token lengths of conversations as the model reads them: after its chat template, headers included.

`check_lengths` (refuse / truncate / drop) and `edgetune data inspect --task chat` count with the same
function, so the report a user reads before training is the count training applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgetune.data.chat import ChatExample


@dataclass
class TemplateLengths:
    """Per-example token counts: the whole conversation, what precedes the answer, and the answer itself."""

    total: list[int]
    prompt: list[int]
    """The conversation before the final answer, with the assistant header that opens it."""

    @property
    def response(self) -> list[int]:
        return [total - prompt for total, prompt in zip(self.total, self.prompt, strict=True)]


def template_lengths(tokenizer, examples: Sequence[ChatExample]) -> TemplateLengths:
    """Count tokens the way TRL tokenises prompt/completion conversations (prompt with the generation prompt)."""
    total, prompt = [], []
    for example in examples:
        messages = list(example.messages)
        total.append(len(_ids(tokenizer.apply_chat_template(messages, tokenize=True))))
        prompt.append(len(_ids(tokenizer.apply_chat_template(messages[:-1], tokenize=True,
                                                             add_generation_prompt=True))))
    return TemplateLengths(total, prompt)


def _ids(encoded) -> list[int]:
    # transformers returns a list of ids, or a BatchEncoding when a tokenizer's defaults ask for a dict.
    return encoded["input_ids"] if hasattr(encoded, "keys") else encoded


def percentiles(counts: Sequence[int]) -> dict[str, int]:
    """p50 / p90 / p99 / max of token counts (nearest rank), the figures that size max_length."""
    if not counts:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    ordered = sorted(counts)

    def rank(share: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * share) - 1))]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1]}
