"""The chat export's parity gate: greedy tokens of the ONNX decoder against PyTorch's `generate`.

Logit-by-logit closeness says little after a few decode steps; what a user sees is the token
sequence. So on real held-out prompts the fp32 graph must produce PyTorch's greedy tokens exactly,
or first differ where PyTorch's two best logits were a near-tie (an fp32 rounding can flip those;
such prompts are reported). Quantised graphs flip near-ties within a few tokens, so they are gated
on perplexity and agreement instead (NOTES), never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from edgetune.tasks.text_generation.scoring import HeldOutConversation


@dataclass
class PromptParity:
    """One prompt's outcome: where the two greedy sequences first differ (None: nowhere) and the logit gap there."""

    source: str
    row: int
    first_difference: int | None
    top_two_gap: float | None = None
    torch_token: int | None = None
    onnx_token: int | None = None


@dataclass
class ChatParityReport:
    prompts: int
    new_tokens: int
    tie_tolerance: float
    identical: int = 0
    near_ties: list[PromptParity] = field(default_factory=list)
    mismatches: list[PromptParity] = field(default_factory=list)
    teacher_forced_agreement: float | None = None
    """Next-token top-1 agreement with PyTorch over the reference answers (reported, not gated)."""

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        text = (f"{self.identical}/{self.prompts} prompts give PyTorch's {self.new_tokens} greedy tokens exactly, "
                f"{len(self.near_ties)} first differ at a near-tie (top-two logit gap < {self.tie_tolerance})")
        if self.mismatches:
            worst = self.mismatches[0]
            text += (f", {len(self.mismatches)} differ without a tie (first: {worst.source} row {worst.row}, token "
                     f"{worst.first_difference}: PyTorch {worst.torch_token}, ONNX {worst.onnx_token}, gap "
                     f"{'none' if worst.top_two_gap is None else format(worst.top_two_gap, '.4g')})")
        if self.teacher_forced_agreement is not None:
            text += f"; next-token agreement on the reference answers {self.teacher_forced_agreement:.2%}"
        return text

    def to_dict(self) -> dict:
        def entry(outcome: PromptParity) -> dict:
            return {"source": outcome.source, "row": outcome.row, "first_difference": outcome.first_difference,
                    "top_two_gap": outcome.top_two_gap, "torch_token": outcome.torch_token,
                    "onnx_token": outcome.onnx_token}

        return {"passed": self.passed, "prompts": self.prompts, "new_tokens": self.new_tokens,
                "tie_tolerance": self.tie_tolerance, "identical": self.identical,
                "near_ties": [entry(o) for o in self.near_ties], "mismatches": [entry(o) for o in self.mismatches],
                "teacher_forced_agreement": self.teacher_forced_agreement}


def compare_greedy(reference, decoder, conversations: list[HeldOutConversation], new_tokens: int,
                   tie_tolerance: float) -> ChatParityReport:
    """Greedy-decode every prompt with the PyTorch `reference` (`chat_models.TorchChatModel`, whose `greedy` is
    `generate(do_sample=False)`) and with the ONNX `decoder`, on the reference's stop tokens; classify where
    they part. The gap at a difference is read from PyTorch's logits for the tokens it produced so far."""
    report = ChatParityReport(len(conversations), new_tokens, tie_tolerance)
    for conversation in conversations:
        expected = reference.greedy(conversation.prompt_ids, new_tokens)
        actual = decoder.greedy(conversation.prompt_ids, new_tokens, reference.stop_ids)
        where = (conversation.example.source, conversation.example.row)
        difference = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
        if difference is None and len(expected) != len(actual):
            difference = min(len(expected), len(actual))  # one stopped where the other went on
        if difference is None:
            report.identical += 1
            continue
        torch_token = expected[difference] if difference < len(expected) else None
        onnx_token = actual[difference] if difference < len(actual) else None
        if torch_token is None:  # ONNX went on past PyTorch's stop token: no PyTorch choice to compare with
            report.mismatches.append(PromptParity(*where, difference, None, None, onnx_token))
            continue
        logits = reference.sequence_logits(conversation.prompt_ids + expected[:difference])[-1]
        top_two = numpy.sort(logits)[-2:]
        gap = float(top_two[1] - top_two[0])
        outcome = PromptParity(*where, difference, gap, torch_token, onnx_token)
        (report.near_ties if gap < tie_tolerance else report.mismatches).append(outcome)
    return report
