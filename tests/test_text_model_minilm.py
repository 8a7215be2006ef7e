"""The in-graph tokenizer on real weights: a quickstart-style MiniLM int8 bundle (one short epoch on a
Banking77 slice: its accuracy does not matter here, its real tokenizer and graph do) gives the Python
runtime's top label on every Banking77 test text when run from raw strings."""

from __future__ import annotations

import numpy
import pytest

from conftest import banking77_subset, read_banking77, write_csv

pytestmark = pytest.mark.integration
pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed")


def test_minilm_text_model_gives_the_python_runtimes_top_label_on_every_banking77_test_text(tmp_path):
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig
    from edgetune.data.config import DataConfig
    from edgetune.export.config import ExportConfig
    from edgetune.export.onnx_export import export_onnx
    from edgetune.finetune.config import FinetuneConfig
    from edgetune.finetune.train import finetune
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize
    from edgetune_runtime.bundle import Bundle

    # The quickstart recipe's settings (recipes/quickstart.yaml), on 2 rows of each of the 77 intents, one epoch.
    data = DataConfig(train=str(write_csv(tmp_path / "train.csv", banking77_subset("train", 77, 2))),
                      test=str(write_csv(tmp_path / "test.csv", banking77_subset("test", 77, 2))))
    finetune(data, FinetuneConfig(model="sentence-transformers/all-MiniLM-L6-v2", epochs=1, learning_rate=3e-4,
                                  max_length=64, freeze_embeddings=True, early_stopping_patience=None),
             tmp_path / "finetune")
    export_onnx(tmp_path / "finetune", tmp_path / "onnx", ExportConfig())
    quantize(tmp_path / "onnx", tmp_path / "int8", QuantizeConfig(variants=("dynamic-int8-per-channel",),
                                                                   keep="dynamic-int8-per-channel",
                                                                   max_accuracy_drop=100.0, latency_texts=20))
    build_bundle(tmp_path / "int8", tmp_path / "bundle", BundleConfig(tokenizer_in_graph=True))

    bundle = Bundle.load(tmp_path / "bundle")
    text_model = bundle.text_model()
    assert bundle.verify().passed and text_model.verify().passed
    texts = [row["text"] for row in read_banking77("test")]
    expected = numpy.stack([bundle.predict_proba([text])[0] for text in texts])
    got = text_model.predict_proba(texts)
    assert len(texts) == 3080
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert numpy.abs(got - expected).max() < 1e-4  # the same ids into the same graph: float rounding at most
