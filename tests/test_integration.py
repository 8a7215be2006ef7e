"""Real weights on real rows: all-MiniLM-L6-v2 fine-tuned on a slice of Banking77."""

from __future__ import annotations

import json

import pytest

from conftest import banking77_subset, write_csv
from edgetune.data.config import DataConfig
from edgetune.finetune.config import FinetuneConfig
from edgetune.finetune.train import finetune
from edgetune.models.resolve import resolve_model

pytestmark = pytest.mark.integration

CLASSES = 10


@pytest.fixture(scope="module")
def banking77_slice(tmp_path_factory):
    directory = tmp_path_factory.mktemp("banking77_slice")
    return DataConfig(
        train=str(write_csv(directory / "train.csv", banking77_subset("train", CLASSES, 30))),
        test=str(write_csv(directory / "test.csv", banking77_subset("test", CLASSES, 12))),
    )


def test_packaged_minilm_resolves_offline_with_its_pinned_hash():
    resolved = resolve_model("sentence-transformers/all-MiniLM-L6-v2", allow_download=False)
    assert resolved.weights_sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert (resolved.path / "config.json").is_file()


def test_minilm_learns_banking77_intents_well_above_chance(tmp_path, banking77_slice):
    config = FinetuneConfig(epochs=6, learning_rate=2e-4, batch_size=16, freeze_embeddings=True,
                            early_stopping_patience=None)
    result = finetune(banking77_slice, config, tmp_path / "minilm")
    accuracy = result.metrics["test"]["accuracy"]
    # Chance is 10%; a pretrained sentence encoder separates these intents after a few epochs.
    assert accuracy >= 0.6, accuracy
    manifest = json.loads((tmp_path / "minilm" / "edgetune.json").read_text())
    assert manifest["base_model"]["weights_sha256"].startswith("53aa5117")
