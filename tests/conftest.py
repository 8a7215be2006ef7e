"""Shared fixtures: real data from ../shared/data, tiny real models built from a config."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGETUNE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
BANKING77 = SHARED_DATA / "banking77"

# Tests never reach a model hub: a miss must fail fast, not wait on a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_banking77(split: str) -> list[dict]:
    with open(BANKING77 / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict], fieldnames: tuple[str, ...] = ("text", "category")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def banking77_subset(split: str, classes: int, per_class: int, seed: int = 0) -> list[dict]:
    """`per_class` real rows of each of the first `classes` Banking77 categories (sorted by name)."""
    rows = read_banking77(split)
    chosen = sorted({row["category"] for row in rows})[:classes]
    generator = random.Random(seed)
    subset = []
    for category in chosen:
        members = [row for row in rows if row["category"] == category]
        subset.extend(generator.sample(members, min(per_class, len(members))))
    return subset


@pytest.fixture(scope="session")
def small_banking77(tmp_path_factory) -> dict[str, Path]:
    """Four Banking77 intents: 24 training and 8 test rows each, real text."""
    directory = tmp_path_factory.mktemp("banking77_small")
    return {
        "train": write_csv(directory / "train.csv", banking77_subset("train", 4, 24)),
        "test": write_csv(directory / "test.csv", banking77_subset("test", 4, 8)),
    }


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece vocabulary trained on Banking77 text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = [row["text"] for row in read_banking77("train")[:3000]]
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=128)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_finetuned_dir(tmp_path_factory, tiny_bert_dir, small_banking77) -> Path:
    """The tiny BERT fine-tuned for a few steps: a real `edgetune finetune` output with its manifest."""
    from edgetune.data.config import DataConfig
    from edgetune.finetune.config import FinetuneConfig
    from edgetune.finetune.train import finetune

    output = tmp_path_factory.mktemp("tiny_finetuned") / "model"
    finetune(DataConfig(train=str(small_banking77["train"]), test=str(small_banking77["test"])),
             FinetuneConfig(model=str(tiny_bert_dir), epochs=3, learning_rate=3e-3, batch_size=8,
                            early_stopping_patience=None), output)
    return output


@pytest.fixture(scope="session")
def tiny_export_dir(tmp_path_factory, tiny_finetuned_dir) -> Path:
    from edgetune.export.config import ExportConfig
    from edgetune.export.onnx_export import export_onnx

    output = tmp_path_factory.mktemp("tiny_export") / "onnx"
    export_onnx(tiny_finetuned_dir, output, ExportConfig())
    return output


BITEXT = SHARED_DATA / "bitext_support" / "customer_support.csv"


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 Llama with SmolLM2's chat template and a BPE vocabulary trained on Bitext."""
    from tiny_chat import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat") / "model", BITEXT)
