"""Intent fidelity of each quantised variant, on a fixed sample of held-out prompts (issue 16 item 5).

Perplexity and next-token agreement say how far a variant's numbers moved; fidelity says whether its
answers still serve the prompt: greedy answers to the same prompts, read by the evaluation's intent
judge (trained once per dataset with edgetune's classification path, cached). A variant that loses
more than `max_fidelity_drop` points against fp32 is vetoed, whatever its perplexity.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.tasks.text_generation.scoring import HeldOutConversation
from edgetune_runtime.tasks.generation.decoder import Decoder


def intent_fidelity_scorer(onnx_dir: Path, prompts: int, new_tokens: int, max_drop_points: float | None,
                           judge_settings=None):
    """A `VariantScorer` adding `intent_fidelity` (and a veto past `max_drop_points`) to every variant's row.

    fp32 is scored first (quantize_chat's order), so its fidelity is the reference the others are held to.
    `judge_settings` (a `ChatEvaluateConfig`; default: the evaluation's defaults) says how the judge is trained
    and on what, so quantize and evaluate share one cached judge per dataset.
    """
    from edgetune.tasks.text_generation.evaluate import judge_training_conversations
    from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig
    from edgetune.tasks.text_generation.judge import intent_fidelity, judge_for

    settings = judge_settings or ChatEvaluateConfig()
    judge = judge_for(judge_training_conversations([("model", Path(onnx_dir))], settings), settings)
    reference: dict[str, float] = {}

    def score(name: str, decoder: Decoder, conversations: list[HeldOutConversation], tokenizer) -> dict:
        sample = [conversation for conversation in conversations if conversation.example.intent][:prompts]
        answers = [tokenizer.decode(decoder.greedy(conversation.prompt_ids, new_tokens), skip_special_tokens=True)
                   for conversation in sample]
        fidelity = intent_fidelity(answers, [conversation.example.intent for conversation in sample], judge)
        if name == "fp32":
            reference["fp32"] = fidelity
        figures = {"intent_fidelity": round(fidelity, 4), "fidelity_prompts": len(sample)}
        if name != "fp32" and max_drop_points is not None and "fp32" in reference:
            figures["scorer_veto"] = 100 * (reference["fp32"] - fidelity) > max_drop_points
        return figures

    return score
