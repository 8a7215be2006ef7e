"""The intent judge: a classifier that reads an answer and names the support intent it serves.

Trained with edgetune's own classification path (finetune -> export -> quantize -> bundle) on the
training split's responses labelled with their intents, then run through `edgetune_runtime.Bundle`,
the product itself. A judge is cached by the fingerprint of the responses it learned from and its
settings, so it trains once per dataset; every evaluation, and the quantize stage scoring a variant,
reuses it. `intent_fidelity` is the one function that turns answers into the fidelity figure.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.data.chat import ChatExample
from edgetune.errors import DataError, EdgetuneError
from edgetune.models.cache import cache_root
from edgetune_runtime.hashing import sha256_json

# One copy of the judging and of the share, shared with `edgetune-runtime bench --judge` (fidelity_share is
# imported from here by the evaluation).
from edgetune_runtime.tasks.generation.reference_scores import fidelity_share, judged_intents  # noqa: F401

log = logging.getLogger(__name__)

JUDGE_RECORD = "judge.json"
JUDGE_BUNDLE = "bundle"
JUDGE_TRAINING_FILE = "responses.csv"
MIN_INTENTS = 2  # a judge with one label would call every answer faithful


class IntentJudge:
    """A verified classification bundle that maps answer texts to intent labels."""

    def __init__(self, directory: Path) -> None:
        from edgetune_runtime.envelope import Bundle

        self.directory = Path(directory)
        self.record = json.loads((self.directory / JUDGE_RECORD).read_text(encoding="utf-8"))
        self.bundle = Bundle.load(self.directory / JUDGE_BUNDLE)

    @property
    def labels(self) -> list[str]:
        return list(self.bundle.labels)

    def judge(self, texts: Sequence[str]) -> list[str | None]:
        """The intent each text reads as; None for an empty text (no answer serves no intent)."""
        return judged_intents(self.bundle, texts)


def intent_fidelity(answers: Sequence[str], intents: Sequence[str], judge: IntentJudge) -> float:
    """Share of `answers` the judge reads as serving the intent of the prompt they answer.

    For any stage that generates answers to a fixed sample of prompts (quantize scoring a variant):
    `intent_fidelity(answers, [example.intent for example in sample], judge_for(training, config))`.
    """
    return fidelity_share(judge.judge(answers), intents)


def judge_training_rows(training: Sequence[ChatExample], per_intent: int | None, seed: int) -> list[tuple[str, str]]:
    """(response, intent) pairs the judge learns from: up to `per_intent` of each intent, seeded."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for example in training:
        if example.intent:
            by_intent[example.intent].append(example.response)
    if len(by_intent) < MIN_INTENTS:
        source = training[0].source if training else "the judge's training data"
        raise DataError(f"{source}: the training conversations carry {len(by_intent)} intent label(s); the judge "
                        f"needs at least {MIN_INTENTS}: pass --judge-data FILE with an intent column, or "
                        f"--no-judge")
    generator = random.Random(seed)
    rows = []
    for intent in sorted(by_intent):
        responses = by_intent[intent]
        chosen = responses if per_intent is None or len(responses) <= per_intent \
            else generator.sample(responses, per_intent)
        rows += [(response, intent) for response in chosen]
    return rows


def judge_for(training: Sequence[ChatExample], config) -> IntentJudge:
    """The judge for these training conversations and `config`'s judge settings (a `ChatEvaluateConfig`),
    trained now if no cached judge has the same fingerprint."""
    rows = judge_training_rows(training, config.judge_per_intent, config.seed)
    settings = {"model": config.judge_model, "epochs": config.judge_epochs, "max_length": config.judge_max_length}
    fingerprint = sha256_json({"rows": rows, "settings": settings})
    directory = cache_root() / "judges" / fingerprint[:20]
    if (directory / JUDGE_RECORD).is_file():
        log.info("intent judge: cached at %s", directory)
        return IntentJudge(directory)
    log.info("intent judge: training on %d responses of %d intents (once per dataset; cached in %s)", len(rows),
             len({intent for _, intent in rows}), directory)
    try:
        with atomic_directory(directory) as staging:
            _train_judge(rows, settings, fingerprint, staging)
    except EdgetuneError:
        if (directory / JUDGE_RECORD).is_file():  # another run finished the same judge first
            return IntentJudge(directory)
        raise
    return IntentJudge(directory)


def _train_judge(rows: list[tuple[str, str]], settings: dict, fingerprint: str, staging: Path) -> None:
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig
    from edgetune.data.config import DataConfig
    from edgetune.export.config import ExportConfig
    from edgetune.export.onnx_export import export_onnx
    from edgetune.finetune.config import FinetuneConfig
    from edgetune.finetune.train import finetune
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize

    # The stages record this file as their data: the export's parity texts and the bundle's golden
    # examples are drawn from its validation carve-out.
    training_file = staging / JUDGE_TRAINING_FILE
    with open(training_file, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "intent"))
        writer.writerows(rows)
    work = staging / "work"
    trained = finetune(DataConfig(train=str(training_file)),
                       FinetuneConfig(model=settings["model"], epochs=settings["epochs"],
                                      max_length=settings["max_length"], early_stopping_patience=None,
                                      # ~30% faster steps on CPU; the judge's vocabulary needs no tuning
                                      freeze_embeddings=True),
                       work / "model")
    export_onnx(work / "model", work / "onnx", ExportConfig(parity_texts=64))
    # int8 when it is faster here and keeps the judge's accuracy within 2 points, else fp32 (quantize's own
    # rule). Measured on Bitext: int8 lost 0.9 points at 2.25x the speed. Fidelity is read beside the judge's
    # own accuracy on the references, so quantize's 0.5-point default is stricter than a judge needs.
    report = quantize(work / "onnx", work / "quantized",
                      QuantizeConfig(variants=("dynamic-int8",), latency_texts=32, max_accuracy_drop=2.0))
    build_bundle(work / "quantized", staging / JUDGE_BUNDLE, BundleConfig(golden_examples=8))
    validation_accuracy = trained.metrics.get("validation", {}).get("accuracy")
    write_json_atomic(staging / JUDGE_RECORD, {
        "fingerprint": fingerprint, "settings": settings, "responses": len(rows),
        "intents": sorted({intent for _, intent in rows}), "variant": report["chosen"],
        "validation_accuracy": validation_accuracy,
    })
    shutil.rmtree(work)  # the bundle is all a judge needs; the model and graphs are hundreds of MB
