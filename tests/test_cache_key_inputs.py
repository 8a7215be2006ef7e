"""The other inputs of a stage's key: the data files and the pretrained model, hashed by content."""

from __future__ import annotations

import hashlib
import shutil

from conftest import banking77_subset, write_csv
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.recipes.cache_key import model_fingerprint
from edgetune.recipes.data_source import resolve_data
from edgetune.recipes.schema import RecipeData


def test_the_data_fingerprint_follows_the_files_contents_and_paths(tmp_path):
    train = write_csv(tmp_path / "train.csv", banking77_subset("train", 3, 10))
    test = write_csv(tmp_path / "test.csv", banking77_subset("test", 3, 4))
    fingerprint = resolve_data(RecipeData(train=str(train), test=str(test))).fingerprint
    assert resolve_data(RecipeData(train=str(train), test=str(test))).fingerprint == fingerprint
    assert resolve_data(RecipeData(train=str(train), test=str(test), split_seed=7)).fingerprint != fingerprint

    test.write_text(test.read_text() + "one more row,card_arrival\n")
    edited = resolve_data(RecipeData(train=str(train), test=str(test))).fingerprint
    assert edited != fingerprint
    # Later stages re-read the data by the recorded path: the same bytes elsewhere are another input.
    moved = shutil.copy(test, tmp_path / "moved.csv")
    assert resolve_data(RecipeData(train=str(train), test=str(moved))).fingerprint != edited


def test_a_local_model_is_fingerprinted_by_its_files_not_by_hidden_ones(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    first = model_fingerprint.__wrapped__(str(model))
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("pid")
    assert model_fingerprint.__wrapped__(str(model)) == first
    (model / "model.safetensors").write_bytes(b"other weights")
    assert model_fingerprint.__wrapped__(str(model)) != first
    assert model_fingerprint.__wrapped__("org/some-hub-model") == "hub:org/some-hub-model"


def test_the_training_data_fingerprint_keeps_its_value(tmp_path):
    """Fine-tunes record it and resume only when it matches: the shared hash helper must not change it."""
    train = write_csv(tmp_path / "train.csv", banking77_subset("train", 3, 10))
    data = load_labelled_data(DataConfig(train=str(train)))
    digest = hashlib.sha256()  # the formula fine-tunes recorded before sha256 moved to edgetune_runtime.hashing
    for split in data.splits():
        digest.update(split.name.encode())
        for text, label in zip(split.texts, split.labels, strict=True):
            digest.update(text.encode("utf-8", "surrogatepass") + b"\x1f" + label.encode() + b"\x1e")
    assert data.fingerprint() == digest.hexdigest()
