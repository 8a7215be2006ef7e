"""A second task added from this module alone: mean-pooled sentence embeddings through export and bundle.

It registers `feature-extraction` in both registries (the toolchain's `edgetune.tasks` and the
runtime's `edgetune_runtime.tasks`, with a tiny runtime bundle class defined here) and runs the
tiny BERT of conftest.py through `export_onnx`, `build_bundle` and the runtime's load and verify.
Nothing outside this file knows the task: if a stage still hard-coded classification, this fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy
import pytest

import edgetune.tasks
import edgetune_runtime.tasks
from conftest import banking77_subset, write_csv
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.errors import EdgetuneError
from edgetune.export.config import ExportConfig
from edgetune.export.onnx_export import export_onnx
from edgetune.export.parity import ParityReport
from edgetune.tasks import HeldOutText, Task
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import seal_manifest

TASK = "feature-extraction"
SECTION = "embedding"


def _mean_pool(hidden: numpy.ndarray, attention_mask: numpy.ndarray) -> numpy.ndarray:
    """Average of the token vectors a text really has (padding excluded): one vector per text."""
    mask = attention_mask[..., None].astype(numpy.float64)
    return (hidden.astype(numpy.float64) * mask).sum(1) / mask.sum(1)


class MeanPooledEmbeddingTask(Task):
    """Sentence embeddings: the encoder's last hidden state, mean-pooled over each text's tokens."""

    name = TASK
    optimum_task = "feature-extraction"
    bench_metrics = ()

    def recognizes(self, model_config: dict) -> bool:
        # A bare encoder (BertModel, ...) has no head: its output is the embedding itself.
        return any(str(name).endswith("Model") for name in model_config.get("architectures") or ())

    def load_model(self, model_dir: Path, **from_pretrained_kwargs):
        from transformers import AutoModel

        return AutoModel.from_pretrained(model_dir, **from_pretrained_kwargs).eval()

    def reference_outputs(self, model, batches):
        import torch

        pooled = []
        with torch.inference_mode():
            for batch in batches:
                hidden = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
                pooled.append(_mean_pool(hidden, batch["attention_mask"]))
        return numpy.concatenate(pooled)

    def onnx_outputs(self, onnx_path, batches, tuning=None):
        from edgetune.onnx_session import session_for

        session = session_for(onnx_path, 0, tuning)
        names = [graph_input.name for graph_input in session.get_inputs()]
        return numpy.concatenate([_mean_pool(session.run(None, {n: batch[n] for n in names})[0],
                                             batch["attention_mask"]) for batch in batches])

    def parity(self, reference, candidate, max_abs_diff):
        difference = numpy.abs(reference - candidate)
        rows_within = (difference.max(1) <= max_abs_diff).mean()
        return ParityReport(len(reference), float(rows_within), float(difference.max()), float(difference.mean()),
                            max_abs_diff)

    def bundle_section(self, record, source_dir, staging):
        from edgetune.bundle.special_tokens import pad_token

        return {"max_length": record["max_length"], "pooling": "mean", **pad_token(source_dir)}

    def golden_examples(self, runtime_bundle, texts):
        return [{"text": text, "embedding": [round(float(x), 6) for x in row]}
                for text, row in zip(texts, runtime_bundle.embed(texts), strict=True)]


class EmbeddingBundle(Bundle):
    """The runtime side: only what differs from the envelope (load, seal and hash checks, session,
    golden-check driver), through the envelope's hooks."""

    def _read_section(self, section: dict, where: str) -> None:
        self.max_length, self.pad_id, self.pad_token = section["max_length"], section["pad_id"], section["pad_token"]

    def _prepare(self, where: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.directory / self.typed_manifest.tokenizer))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token=self.pad_token)

    def embed(self, texts: list[str]) -> numpy.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {"input_ids": numpy.array([e.ids for e in encodings], numpy.int64),
                 "attention_mask": numpy.array([e.attention_mask for e in encodings], numpy.int64),
                 "token_type_ids": numpy.array([e.type_ids for e in encodings], numpy.int64)}
        return _mean_pool(self.session.run(None, {n: feeds[n] for n in self.input_names})[0], feeds["attention_mask"])

    def _golden_mismatches(self, examples: list, tolerance: float) -> list[dict]:
        embeddings = self.embed([example["text"] for example in examples])
        return [{"text": example["text"], "max_abs_diff": float(numpy.abs(row - example["embedding"]).max())}
                for example, row in zip(examples, embeddings, strict=True)
                if numpy.abs(row - example["embedding"]).max() > tolerance]


@pytest.fixture
def toy_task(monkeypatch):
    """The toy task registered in both registries for one test; both registries are restored after."""
    monkeypatch.setattr(edgetune.tasks, "_TASKS", dict(edgetune.tasks._TASKS))
    monkeypatch.setattr(edgetune_runtime.tasks, "_TASKS", dict(edgetune_runtime.tasks._TASKS))
    task = MeanPooledEmbeddingTask()
    edgetune.tasks.register_task(task)
    edgetune_runtime.tasks.register_task(edgetune_runtime.tasks.TaskSpec(TASK, SECTION,
                                                                         f"{__name__}:EmbeddingBundle"))
    return task


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny BERT without its classification head: a bare encoder, as an embedding model ships."""
    from transformers import AutoModel

    directory = tmp_path_factory.mktemp("tiny_encoder")
    AutoModel.from_pretrained(tiny_bert_dir).save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert_dir / name).is_file():
            shutil.copy2(tiny_bert_dir / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def unlabelled_texts(tmp_path_factory) -> Path:
    rows = [{"text": row["text"]} for row in banking77_subset("test", 3, 6, seed=1)]
    return write_csv(tmp_path_factory.mktemp("texts") / "texts.csv", rows, ("text",))


def test_a_task_registered_here_exports_bundles_loads_and_verifies(toy_task, encoder_dir, unlabelled_texts,
                                                                   tmp_path):
    exported = export_onnx(encoder_dir, tmp_path / "onnx", ExportConfig(validation=str(unlabelled_texts),
                                                                        max_abs_diff=1e-4))
    assert exported.parity.passed and exported.parity.texts_compared == 18
    assert not exported.pruned_to_first_token  # the toy reads every position
    export_manifest = json.loads((tmp_path / "onnx" / "edgetune.json").read_text())
    assert export_manifest["task"] == TASK and "labels" not in export_manifest

    result = build_bundle(tmp_path / "onnx", tmp_path / "bundle",
                          BundleConfig(validation=str(unlabelled_texts), golden_examples=5, golden_tolerance=1e-3))
    manifest = result.manifest
    assert manifest["task"] == TASK and manifest[SECTION]["pooling"] == "mean" and "classification" not in manifest
    golden = json.loads((tmp_path / "bundle" / "golden.json").read_text())
    assert len(golden) == 5 and len(golden[0]["embedding"]) == 32  # hidden size of the tiny BERT

    loaded = Bundle.load(tmp_path / "bundle")
    assert isinstance(loaded, EmbeddingBundle)
    assert loaded.verify().passed
    # The golden check can fail: an expected embedding moved by more than the tolerance (re-sealed, so
    # the envelope's hashes pass) is reported, and an unsealed edit is refused at load.
    golden[0]["embedding"][0] += 0.01
    (tmp_path / "bundle" / "golden.json").write_text(json.dumps(golden))
    with pytest.raises(BundleError, match="golden.json does not match its sha256"):
        Bundle.load(tmp_path / "bundle")
    manifest["files"]["golden.json"] = sha256_file(tmp_path / "bundle" / "golden.json")
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    check = Bundle.load(tmp_path / "bundle").verify()
    assert not check.passed and [m["text"] for m in check.mismatches] == [golden[0]["text"]]


def test_the_toy_parity_gate_refuses_a_graph_that_differs(toy_task, encoder_dir, unlabelled_texts, tmp_path):
    from edgetune.export.parity import ParityError

    with pytest.raises(ParityError, match="export refused"):
        export_onnx(encoder_dir, tmp_path / "onnx", ExportConfig(validation=str(unlabelled_texts),
                                                                 max_abs_diff=1e-15, optimize=False))
    assert not (tmp_path / "onnx").exists()


def test_a_stage_the_task_does_not_supply_is_refused_in_one_line(toy_task, encoder_dir, unlabelled_texts, tmp_path):
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize

    export_onnx(encoder_dir, tmp_path / "onnx", ExportConfig(validation=str(unlabelled_texts), optimize=False))
    with pytest.raises(EdgetuneError, match="task 'feature-extraction' does not support quantize yet") as error:
        quantize(tmp_path / "onnx", tmp_path / "q", QuantizeConfig(validation=str(unlabelled_texts),
                                                                    variants=("fp32",)))
    assert "\n" not in str(error.value) and not (tmp_path / "q").exists()


def test_an_artifact_of_an_unregistered_task_is_refused_in_one_line(tiny_export_dir, tmp_path):
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize

    foreign = tmp_path / "speech"
    shutil.copytree(tiny_export_dir, foreign)
    manifest = json.loads((foreign / "edgetune.json").read_text())
    (foreign / "edgetune.json").write_text(json.dumps(manifest | {"task": "speech-recognition"}))
    for stage in (lambda: quantize(foreign, tmp_path / "q", QuantizeConfig(variants=("fp32",))),
                  lambda: build_bundle(foreign, tmp_path / "b", BundleConfig())):
        with pytest.raises(EdgetuneError, match="task 'speech-recognition' has no toolchain support "
                                                "\\(registered: text-classification, text-generation\\)") as error:
            stage()
        assert "\n" not in str(error.value)
    assert not (tmp_path / "q").exists() and not (tmp_path / "b").exists()


def test_unknown_task_names_are_one_line_errors():
    with pytest.raises(EdgetuneError, match="recipe: task 'nosuch' has no toolchain support"):
        edgetune.tasks.get_task("nosuch", where="recipe")
    assert edgetune.tasks.get_task("text-classification").optimum_task == "text-classification"


def test_the_toy_is_gone_once_its_test_ends():
    assert edgetune.tasks.registered_tasks() == ("text-classification", "text-generation")
    assert TASK not in edgetune_runtime.tasks.registered_tasks()


def test_a_classifier_is_recognised_and_a_bare_encoder_is_not(toy_task):
    classification = edgetune.tasks.get_task("text-classification")
    assert classification.recognizes({"architectures": ["BertForSequenceClassification"]})
    assert not classification.recognizes({"architectures": ["BertModel"]})
    assert edgetune.tasks.task_for_model_config({"architectures": ["BertModel"]}) is toy_task


def test_golden_texts_of_an_unlabelled_task_are_the_first_texts():
    held_out = HeldOutText(["a", "b", "c"], ["", "", ""], "texts.csv")
    assert Task().golden_texts(held_out, 2) == ["a", "b"]
