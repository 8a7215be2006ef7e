"""`evaluate_chat`: did fine-tuning help? Chat models side by side on the same held-out prompts.

For each model (a base and its fine-tuned versions, PyTorch directories or ONNX chat artifacts alike):
perplexity of the reference answers (teacher-forced, answer tokens only, under the model's chat
template), greedy answers and their ROUGE-L F against the references, intent fidelity (the share of
answers an intent judge reads as serving the prompt's intent; the judge's own accuracy on the
references is reported beside it), the share of answers in the dataset's `{{Placeholder}}` style and
the mean answer length. Written as `generations.jsonl` (one line per prompt, every model's answer)
and `scores.json` (per model, the reference, and each model minus the first, the base).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.configuration import config_to_dict
from edgetune.data.chat import ChatExample, load_chat_data
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import write_stage_manifest
from edgetune.tasks.text_generation import TEXT_GENERATION
from edgetune.tasks.text_generation.answer_scores import (
    AnswerScores,
    encode_conversation,
    has_placeholder,
    score_answer,
)
from edgetune.tasks.text_generation.evaluate_config import ChatEvaluateConfig
from edgetune.tasks.text_generation.heldout import heldout_conversations, recorded_chat_config
from edgetune_runtime.atomic_write import atomic_file

GENERATIONS_FILE = "generations.jsonl"
SCORES_FILE = "scores.json"
COMPARED = ("perplexity", "rouge_l", "intent_fidelity", "placeholder_share", "mean_answer_words",
            "mean_answer_tokens")
"""Figures each model is compared on against the first (the base): model minus base."""


@dataclass
class ChatEvaluation:
    """Where the report went, the figures per model and the per-prompt rows."""

    output_dir: Path
    scores: dict
    generations: list[dict]

    def table(self) -> str:
        return format_scores_table(self.scores)


def sample_conversations(conversations: Sequence[ChatExample], per_intent: int | None, limit: int | None,
                         seed: int) -> list[ChatExample]:
    """Up to `per_intent` conversations of each intent, then at most `limit` drawn round-robin over the
    intents (sorted), each intent's order shuffled by `seed`: every intent is scored alike, every run the same."""
    by_intent: dict[str, list[ChatExample]] = defaultdict(list)
    for example in conversations:
        by_intent[example.intent or ""].append(example)
    generator = random.Random(seed)
    queues = []
    for intent in sorted(by_intent):
        members = list(by_intent[intent])
        generator.shuffle(members)
        queues.append(members[:per_intent] if per_intent is not None else members)
    chosen: list[ChatExample] = []
    for depth in range(max((len(queue) for queue in queues), default=0)):
        chosen += [queue[depth] for queue in queues if depth < len(queue)]
    return chosen[:limit] if limit is not None else chosen


def _recording_model(models: Sequence[tuple[str, Path]]) -> Path | None:
    """The first model that records the chat data it was trained on (the fine-tuned one)."""
    return next((path for _, path in models if recorded_chat_config(path) is not None), None)


def evaluation_conversations(models: Sequence[tuple[str, Path]], config: ChatEvaluateConfig) -> list[ChatExample]:
    """The conversations file, else the test split a fine-tuned model among `models` recorded."""
    recording = _recording_model(models)
    if recording is None and config.conversations is None:
        raise EdgetuneError("none of the models records the chat data it was fine-tuned on (a base model does "
                            "not); pass --conversations FILE with held-out prompts and reference answers")
    return heldout_conversations(recording or models[0][1], "test", file=config.conversations)


def judge_training_conversations(models: Sequence[tuple[str, Path]], config: ChatEvaluateConfig) -> list[ChatExample]:
    """The judge's training conversations: every row of --judge-data, else the recorded training split."""
    if config.judge_data is not None:
        # Repeated prompts are harmless here: the judge reads answers, not prompts.
        data = load_chat_data(ChatDataConfig(train=config.judge_data, allow_duplicate_prompts=True))
        return list(data.train.examples) + list(data.validation.examples)
    recording = _recording_model(models)
    if recording is None:
        raise EdgetuneError("the intent judge needs training responses with intents and no model records its "
                            "training data; pass --judge-data FILE (chat data with an intent column) or --no-judge")
    return list(load_chat_data(recorded_chat_config(recording)).train.examples)


def evaluate_chat(models: Sequence[tuple[str, str | Path]], config: ChatEvaluateConfig, output_dir: str | Path, *,
                  conversations: Sequence[ChatExample] | None = None, force: bool = False) -> ChatEvaluation:
    """Score `models` (name, directory; the first is the base the others are compared with) on the same
    sample of held-out `conversations` (default: `evaluation_conversations`) and write the report to
    `output_dir` atomically."""
    from tqdm.auto import tqdm

    from edgetune.tasks.text_generation.chat_models import load_chat_model

    models = [(name, Path(path)) for name, path in models]
    _check_models(models)
    output_dir = Path(output_dir)
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")
    pool = list(conversations) if conversations is not None else evaluation_conversations(models, config)
    sample = sample_conversations(pool, config.per_intent, config.limit, config.seed)
    if not sample:
        raise EdgetuneError("no held-out conversations to score; pass --conversations FILE with some rows")
    judge = None
    if config.judge:
        from edgetune.tasks.text_generation.judge import judge_for

        judge = judge_for(judge_training_conversations(models, config), config)

    answers: dict[str, list[AnswerScores]] = {}
    kinds: dict[str, str] = {}
    for name, path in models:
        model = load_chat_model(path, config.threads)
        kinds[name] = model.kind
        answers[name] = []
        for example in tqdm(sample, desc=name, unit="prompt"):
            encoded = encode_conversation(model.tokenizer, example, model.stop_ids, model.context_length)
            logits = model.sequence_logits(encoded.prompt_ids + encoded.reference_ids)
            room = min(config.max_new_tokens, model.context_length - len(encoded.prompt_ids))
            generated = model.greedy(encoded.prompt_ids, room)
            answers[name].append(score_answer(model.tokenizer, encoded, generated, logits, example.response,
                                              model.stop_ids))
        del model  # one model in memory at a time

    judged = {name: judge.judge([scores.answer for scores in answers[name]]) for name in answers} if judge else {}
    judged_references = judge.judge([example.response for example in sample]) if judge else None
    scores = _scores(models, kinds, answers, judged, sample, judged_references, judge)
    generations = _generation_rows(sample, answers, judged)
    with atomic_directory(output_dir, overwrite=force) as staging:
        with atomic_file(staging / GENERATIONS_FILE) as handle:
            for row in generations:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json_atomic(staging / SCORES_FILE, scores)
        write_stage_manifest(staging, "evaluate", TEXT_GENERATION, {
            "models": {name: str(path) for name, path in models}, "config": config_to_dict(config),
            "conversations": sorted({example.source for example in sample}), "metrics": scores})
    return ChatEvaluation(output_dir, scores, generations)


def _check_models(models: list[tuple[str, Path]]) -> None:
    if not models:
        raise EdgetuneError("no model to evaluate; name a base model and the fine-tuned ones")
    names = [name for name, _ in models]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise EdgetuneError(f"two models are named {repeated!r}; name them apart with NAME=PATH")
    for name, path in models:
        if not path.is_dir():
            raise EdgetuneError(f"{path} (model {name!r}): not a directory; pass a chat model directory")


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fidelity(judged: Sequence[str | None], sample: Sequence[ChatExample]) -> float | None:
    from edgetune.tasks.text_generation.judge import fidelity_share

    pairs = [(label, example.intent) for label, example in zip(judged, sample, strict=True) if example.intent]
    return fidelity_share([label for label, _ in pairs], [intent for _, intent in pairs]) if pairs else None


def _scores(models, kinds, answers, judged, sample, judged_references, judge) -> dict:
    per_model = {}
    for name, path in models:
        rows = answers[name]
        nll, tokens = sum(row.reference_nll for row in rows), sum(row.reference_tokens for row in rows)
        per_model[name] = {
            "path": str(path), "engine": kinds[name], "n": len(rows),
            # Pooled over every reference token, so long answers weigh by their length, as in training.
            "perplexity": math.exp(nll / tokens) if tokens else None,
            "rouge_l": _mean([row.rouge_l for row in rows]),
            "intent_fidelity": _fidelity(judged[name], sample) if judge else None,
            "placeholder_share": _share([row.placeholder for row in rows]),
            "mean_answer_words": _mean([row.answer_words for row in rows]),
            "mean_answer_tokens": _mean([row.answer_tokens for row in rows]),
        }
    base = models[0][0]
    deltas = {name: {key: (per_model[name][key] - per_model[base][key]
                           if per_model[name][key] is not None and per_model[base][key] is not None else None)
                     for key in COMPARED}
              for name, _ in models[1:]}
    reference = {
        "placeholder_share": _share([has_placeholder(example.response) for example in sample]),
        "mean_answer_words": _mean([len(example.response.split()) for example in sample]),
        "judge_accuracy": _fidelity(judged_references, sample) if judge else None,
    }
    return {"models": per_model, "reference": reference, "base": base, "deltas_vs_base": deltas,
            "judge": judge.record if judge else None, "prompts": len(sample),
            "intents": len({example.intent for example in sample if example.intent})}


def _generation_rows(sample, answers, judged) -> list[dict]:
    rows = []
    for index, example in enumerate(sample):
        per_model = {}
        for name, scores in answers.items():
            row = scores[index]
            per_model[name] = {"answer": row.answer, "judged_intent": judged[name][index] if judged else None,
                               "rouge_l": round(row.rouge_l, 4), "placeholder": row.placeholder,
                               "answer_tokens": row.answer_tokens,
                               "reference_nll_per_token": round(row.reference_nll / max(row.reference_tokens, 1), 4)}
        rows.append({"prompt": example.prompt, "intent": example.intent, "reference": example.response,
                     "source": example.source, "row": example.row, "models": per_model})
    return rows


def format_scores_table(scores: dict) -> str:
    """The report as a fixed-width table: one line per model, the references, then each model minus the base."""

    def cell(value, fmt: str) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    header = f"{'model':<32}{'engine':>8}{'n':>5}{'ppl':>9}{'ROUGE-L':>9}{'fidelity':>10}{'{{ph}}':>8}" \
             f"{'words':>8}{'tokens':>8}"
    lines = [header]
    for name, row in scores["models"].items():
        lines.append(f"{name[:32]:<32}{row['engine']:>8}{row['n']:>5}{cell(row['perplexity'], '.3f'):>9}"
                     f"{cell(row['rouge_l'], '.3f'):>9}{cell(row['intent_fidelity'], '.1%'):>10}"
                     f"{cell(row['placeholder_share'], '.0%'):>8}{cell(row['mean_answer_words'], '.1f'):>8}"
                     f"{cell(row['mean_answer_tokens'], '.1f'):>8}")
    reference = scores["reference"]
    lines.append(f"{'reference answers':<32}{'':>8}{scores['prompts']:>5}{'':>9}{'':>9}"
                 f"{cell(reference['judge_accuracy'], '.1%'):>10}{cell(reference['placeholder_share'], '.0%'):>8}"
                 f"{cell(reference['mean_answer_words'], '.1f'):>8}")
    for name, delta in scores["deltas_vs_base"].items():
        lines.append(f"{(name + ' - base')[:32]:<32}{'':>8}{'':>5}{cell(delta['perplexity'], '+.3f'):>9}"
                     f"{cell(delta['rouge_l'], '+.3f'):>9}{cell(delta['intent_fidelity'], '+.1%'):>10}"
                     f"{cell(delta['placeholder_share'], '+.0%'):>8}{cell(delta['mean_answer_words'], '+.1f'):>8}"
                     f"{cell(delta['mean_answer_tokens'], '+.1f'):>8}")
    if scores["reference"]["judge_accuracy"] is not None:
        lines.append("fidelity of the reference answers = the judge's own accuracy: read fidelity against it")
    return "\n".join(lines)
