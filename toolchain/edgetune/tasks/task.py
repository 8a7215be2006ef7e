"""`Task`: what one task supplies to the stages. Subclass it, override what the task needs, register it.

Defaults are the task-neutral behaviour (encode text with the model's tokenizer, compare the
graph's first output with PyTorch's, pick the first held-out texts as golden inputs); a method
whose default raises names the stage that needs it, so a half-written task fails in one line.
Heavy imports (torch, transformers, onnx) stay inside the methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy

from edgetune.errors import EdgetuneError


@dataclass
class HeldOutText:
    """Held-out texts and their labels ('' where the file has none), and where they were read."""

    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


class Task:
    """One task behind the seam. Instances are registered with `edgetune.tasks.register_task`."""

    name: str = ""
    """The artifact's `task` value, the same name the runtime registers (`text-classification`)."""
    optimum_task: str = ""
    """Optimum's exporter task string for `main_export`."""
    bench_metrics: tuple[str, ...] = ()
    """Quality figures a stage's evaluation reports for this task (copied into the bundle's metrics)."""
    labels_required: bool = False
    """Whether quantize and bundle need labelled held-out data (to score variants, to pick golden inputs)."""

    def _unsupported(self, what: str) -> EdgetuneError:
        return EdgetuneError(f"task {self.name!r} does not support {what} yet; its edgetune.tasks module "
                             f"must implement it")

    # Recognising a model no edgetune stage wrote (an `optimum-cli export onnx` directory, a checkpoint).
    def recognizes(self, model_config: dict) -> bool:
        """Whether a Hugging Face config.json (its `architectures`) is a model of this task."""
        return False

    def model_record(self, model_config: dict) -> dict:
        """Task entries of an export/quantize manifest, read from the model's config.json (labels, ...)."""
        return {}

    # finetune
    def load_for_training(self, model_ref, label_names: list[str], tokenizer):
        raise self._unsupported("fine-tuning")

    def encode_for_training(self, tokenizer, split, label_ids: dict[str, int], max_length: int):
        raise self._unsupported("fine-tuning")

    def training_metrics(self, outputs: numpy.ndarray, label_ids: numpy.ndarray, label_names: list[str]
                         ) -> dict[str, float]:
        """The figures checkpoints are selected on during training (`FinetuneConfig.metric` names one)."""
        raise self._unsupported("fine-tuning")

    def evaluate_predictions(self, outputs: numpy.ndarray, label_ids: numpy.ndarray, label_names: list[str]) -> dict:
        """The full evaluation of the selected model on a split, written to metrics.json."""
        raise self._unsupported("fine-tuning")

    # export
    def load_model(self, model_dir: Path, **from_pretrained_kwargs):
        """The PyTorch model the exported graph must reproduce, in eval mode."""
        raise self._unsupported("export")

    def encode(self, tokenizer, texts: list[str], batch_size: int, max_length: int) -> list[dict[str, numpy.ndarray]]:
        """int64 numpy batches, each padded to its own longest text (as the device will see them)."""
        from edgetune.export.parity import encode_batches

        return encode_batches(tokenizer, texts, batch_size, max_length)

    def reference_outputs(self, model, batches: list[dict[str, numpy.ndarray]]) -> numpy.ndarray:
        """PyTorch's outputs for `batches`, stacked: what the graph's first output must reproduce."""
        raise self._unsupported("export")

    def onnx_outputs(self, onnx_path: Path, batches: list[dict[str, numpy.ndarray]], tuning: dict | None = None
                     ) -> numpy.ndarray:
        from edgetune.export.parity import onnx_logits

        return onnx_logits(onnx_path, batches, tuning=tuning)

    def parity(self, reference: numpy.ndarray, candidate: numpy.ndarray, max_abs_diff: float):
        """The parity gate's report (`edgetune.export.parity.ParityReport`); its `passed` decides."""
        from edgetune.export.parity import compare_logits

        return compare_logits(reference, candidate, max_abs_diff)

    def prune_graph(self, source: Path, destination: Path) -> str | None:
        """Write a graph computing only what the task reads and return None, or return why not."""
        return f"task {self.name!r} reads every position"

    # quantize
    def evaluation_targets(self, heldout: HeldOutText, record: dict) -> numpy.ndarray:
        """What a variant's outputs are scored against (label ids for classification)."""
        raise self._unsupported("quantize")

    def evaluate_variant(self, name: str, description: str, path: Path, session, batches, targets: numpy.ndarray,
                         record: dict, excluded: list[str], outputs: numpy.ndarray | None = None):
        """A `VariantEvaluation` of the graph at `path` run by `session` (latency is timed later), or scored from
        `outputs` the graph gave on `batches` elsewhere (an emulated CPU: `edgetune quantize --target`)."""
        raise self._unsupported("quantize")

    def test_metrics(self, outputs: numpy.ndarray, targets: numpy.ndarray, record: dict) -> dict:
        raise self._unsupported("quantize")

    # bundle
    def bundle_config(self, config):
        """`config` (a `BundleConfig`) as this task's bundle settings; a task with flags of its own converts it."""
        return config

    def golden_inputs(self, record: dict, source_dir: Path, config) -> list:
        """The inputs golden examples are computed on: held-out texts from `config.validation` or the
        validation split the model recorded (`golden_texts` picks which)."""
        from edgetune.export.heldout import RecordedData, heldout_texts

        heldout = heldout_texts(config.validation, RecordedData(record["source"].get("data"), source_dir),
                                "validation", "--validation", text_column=config.text_column,
                                label_column=config.label_column, labels_required=self.labels_required)
        return self.golden_texts(heldout, config.golden_examples)

    def golden_texts(self, heldout: HeldOutText, count: int) -> list[str]:
        return heldout.texts[:count]

    def postprocess_bundle_graph(self, model_path: Path) -> dict:
        """Change the bundled graph in place (e.g. append a softmax); return entries for the section."""
        return {}

    def bundle_section(self, record: dict, source_dir: Path, staging: Path) -> dict:
        """The manifest's task section; may write the files it names into `staging`."""
        raise self._unsupported("bundling")

    def bundle_files(self, record: dict, source_dir: Path, staging: Path, config) -> dict:
        """Write the task's files besides model.onnx and tokenizer.json into `staging` and return the
        section; a task whose section depends on its bundle settings (`bundle_config`) overrides this."""
        return self.bundle_section(record, source_dir, staging)

    def golden_examples(self, runtime_bundle, texts: list[str]) -> list[dict]:
        """Expected outputs, computed by the runtime's own bundle class on the staged files."""
        raise self._unsupported("bundling")

    def card_summary(self, manifest: dict) -> str:
        """The model card's line about what the model outputs."""
        return f"Task: {self.name}."

    def card_measured(self, manifest: dict, variants: dict[str, dict] | None) -> list[str] | None:
        """The model card's "Measured" lines; None: the classifier's variants table or the metrics list."""
        return None

    def card_usage(self, manifest: dict) -> list[str] | None:
        """The model card's Python example; None: `predict`."""
        return None
