"""Text classification behind the task seam: a sequence classifier, its labels, accuracy and softmax.

Everything here used to be written inline in finetune, export, quantize and bundle; those stages
now call these methods through `edgetune.tasks.get_task("text-classification")`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy

from edgetune.errors import DataError, EdgetuneError
from edgetune.tasks.task import HeldOutText, Task

LABELS_FILE = "labels.json"


class ClassificationTask(Task):
    """One label per text, from a Hugging Face `*ForSequenceClassification` model."""

    name = "text-classification"
    optimum_task = "text-classification"
    bench_metrics = ("accuracy", "macro_f1")
    labels_required = True

    def recognizes(self, model_config: dict) -> bool:
        return any(str(name).endswith("ForSequenceClassification") for name in model_config.get("architectures") or ())

    def model_record(self, model_config: dict) -> dict:
        id2label = model_config.get("id2label") or {}
        return {"labels": [id2label[str(i)] for i in range(len(id2label))]}

    # finetune
    def load_for_training(self, model_ref, label_names: list[str], tokenizer):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            model_ref.path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: index for index, name in enumerate(label_names)},
            ignore_mismatched_sizes=True,  # a checkpoint with another head is re-headed for these labels
            **model_ref.from_pretrained_kwargs(),
        )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model

    def encode_for_training(self, tokenizer, split, label_ids: dict[str, int], max_length: int):
        import datasets

        encoded = tokenizer(split.texts, truncation=True, max_length=max_length)
        columns = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
        columns["labels"] = [label_ids[label] for label in split.labels]
        return datasets.Dataset.from_dict(columns)

    def training_metrics(self, outputs: numpy.ndarray, label_ids: numpy.ndarray, label_names: list[str]
                         ) -> dict[str, float]:
        from edgetune.finetune.metrics import summary_metrics

        return summary_metrics(label_ids, outputs.argmax(axis=-1), len(label_names))

    def evaluate_predictions(self, outputs: numpy.ndarray, label_ids: numpy.ndarray, label_names: list[str]) -> dict:
        from edgetune.finetune.metrics import classification_report

        return classification_report(outputs, label_ids, label_names)

    # export
    def load_model(self, model_dir: Path, **from_pretrained_kwargs):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_dir, **from_pretrained_kwargs).eval()

    def reference_outputs(self, model, batches: list[dict[str, numpy.ndarray]]) -> numpy.ndarray:
        import torch

        model.eval()
        with torch.inference_mode():
            return numpy.concatenate([model(**{name: torch.from_numpy(value) for name, value in batch.items()})
                                      .logits.numpy() for batch in batches])

    def prune_graph(self, source: Path, destination: Path) -> str | None:
        # A classifier reads only the first token of the last layer (export/first_token.py).
        from edgetune.export.first_token import prune_to_first_token

        return prune_to_first_token(source, destination)

    # quantize
    def evaluation_targets(self, heldout: HeldOutText, record: dict) -> numpy.ndarray:
        index = {name: i for i, name in enumerate(record["labels"])}
        for row, label in enumerate(heldout.labels, start=1):
            if label not in index:
                preview = ", ".join(record["labels"][:5]) + (", ..." if len(record["labels"]) > 5 else "")
                raise DataError(f"{heldout.source}, row {row}: label {label!r} is not one of the model's labels "
                                f"({preview}); pass held-out data labelled like the training data")
        return numpy.array([index[label] for label in heldout.labels])

    def evaluate_variant(self, name: str, description: str, path: Path, session, batches, targets: numpy.ndarray,
                         record: dict, excluded: list[str], outputs: numpy.ndarray | None = None):
        from edgetune.quantize.evaluate import evaluate_variant

        return evaluate_variant(name, description, path, session, batches, targets, record["labels"], excluded,
                                outputs)

    def test_metrics(self, outputs: numpy.ndarray, targets: numpy.ndarray, record: dict) -> dict:
        from edgetune.finetune.metrics import summary_metrics

        return summary_metrics(targets, outputs.argmax(-1), len(record["labels"]))

    # bundle
    def golden_texts(self, heldout: HeldOutText, count: int) -> list[str]:
        """One held-out text per label, round-robin, so the golden set covers many classes."""
        by_label: dict[str, list[str]] = {}
        for text, label in zip(heldout.texts, heldout.labels, strict=True):
            by_label.setdefault(label, []).append(text)
        chosen: list[str] = []
        while len(chosen) < count and any(by_label.values()):
            for label in sorted(by_label):
                if by_label[label] and len(chosen) < count:
                    chosen.append(by_label[label].pop(0))
        return chosen

    def postprocess_bundle_graph(self, model_path: Path) -> dict:
        from edgetune.bundle.probabilities import append_softmax

        probabilities_output = append_softmax(model_path)
        return {"probabilities_output": probabilities_output} if probabilities_output else {}

    def bundle_section(self, record: dict, source_dir: Path, staging: Path) -> dict:
        from edgetune.bundle.special_tokens import pad_token

        labels = record.get("labels")
        if not labels:
            raise EdgetuneError(f"{source_dir}: the model records no labels (no id2label in config.json); "
                                "a classifier bundle needs them")
        (staging / LABELS_FILE).write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return {"labels": labels, "labels_file": LABELS_FILE, "max_length": record["max_length"],
                "truncation": True, "padding": "longest in batch", **pad_token(source_dir)}

    def bundle_files(self, record: dict, source_dir: Path, staging: Path, config) -> dict:
        section = self.bundle_section(record, source_dir, staging)
        if config.tokenizer_in_graph:
            from edgetune.bundle.probabilities import PROBABILITIES_OUTPUT, graph_outputs
            from edgetune.bundle.special_tokens import TOKENIZER_FILE
            from edgetune.bundle.text_model import TEXT_MODEL_FILE, write_text_model
            from edgetune.export.artifact import MODEL_FILE

            # The staged graph already ends in the Softmax (postprocess_bundle_graph ran first).
            outputs = graph_outputs(staging / MODEL_FILE)
            probabilities = PROBABILITIES_OUTPUT if PROBABILITIES_OUTPUT in outputs else None
            section |= write_text_model(staging / MODEL_FILE, staging / TOKENIZER_FILE, section["max_length"],
                                        probabilities, staging / TEXT_MODEL_FILE)
        return section

    def golden_examples(self, runtime_bundle, texts: list[str]) -> list[dict]:
        probabilities = runtime_bundle.predict_proba(texts)
        golden = []
        for text, row in zip(texts, probabilities, strict=True):
            order = row.argsort()[::-1]
            golden.append({"text": text, "label": runtime_bundle.labels[int(order[0])],
                           "probability": round(float(row[order[0]]), 6),
                           "margin": round(float(row[order[0]] - row[order[1]]), 6) if len(order) > 1 else 1.0})
        if runtime_bundle.typed_manifest.section.get("text_model"):
            from edgetune.bundle.text_model import check_text_model

            check_text_model(runtime_bundle, texts)
        return golden

    def card_summary(self, manifest: dict) -> str:
        section = manifest["classification"]
        return f"Labels: {len(section['labels'])}. Max length: {section['max_length']} tokens."
