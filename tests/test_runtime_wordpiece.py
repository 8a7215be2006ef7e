"""The runtime's pure-Python WordPiece gives exactly the Rust tokenizer's ids, or steps aside."""

from __future__ import annotations

import csv
import json

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from conftest import SHARED_DATA, read_banking77
from edgetune.models.resolve import resolve_model
from edgetune_runtime.wordpiece import AsciiWordPiece

EDGE_CASES = [
    "", "   ", "?!", "a" * 150, "pneumonoultramicroscopicsilicovolcanoconiosis", "qxzqxzqxz", "card #4539-1234",
    "I can't top-up $100.50 @ATM!!", "Why   was  my card\u00a0declined?", "naïve café", "tab\tseparated",
    "what is [MASK] here", "what is [mask] here", "[CLS] first", "中文 text", "emoji 🙂 card", "end with a backslash\\",
    "UPPERCASE WORDS AND 123 DIGITS", " ".join(["word"] * 300),
]


def _sst2_texts() -> list[str]:
    texts = []
    for name, column in (("train.tsv", "sentence"), ("dev.tsv", "content")):
        with open(SHARED_DATA / "sst2" / name, newline="", encoding="utf-8") as handle:
            texts += [row[column] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return texts


@pytest.fixture(scope="module")
def minilm_tokenizer_json():
    return resolve_model("sentence-transformers/all-MiniLM-L6-v2", allow_download=False).path / "tokenizer.json"


def _rust(spec: dict, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return tokenizer


def _fast(spec: dict, max_length: int) -> AsciiWordPiece | None:
    return AsciiWordPiece.from_tokenizer(Tokenizer.from_str(json.dumps(spec)), max_length)


def _assert_same_ids_or_fallback(spec: dict, texts: list[str], max_length: int) -> int:
    rust = _rust(spec, max_length)
    fast = AsciiWordPiece.from_tokenizer(rust, max_length)
    assert fast is not None
    handled = 0
    for text in texts:
        ids = fast.ids(text)
        if ids is not None:
            handled += 1
            assert ids == rust.encode(text).ids, text
    return handled


@pytest.mark.integration
def test_ids_equal_the_rust_tokenizers_on_every_banking77_and_sst2_text(minilm_tokenizer_json):
    spec = json.loads(minilm_tokenizer_json.read_text(encoding="utf-8"))
    texts = [row["text"] for split in ("train", "test") for row in read_banking77(split)] + _sst2_texts()
    handled = _assert_same_ids_or_fallback(spec, texts + EDGE_CASES, max_length=128)
    assert handled > 0.99 * len(texts), "printable ASCII English takes the fast path"
    # A short max_length truncates the pieces, keeping both special tokens, as the Rust tokenizer does.
    _assert_same_ids_or_fallback(spec, texts[:2000] + EDGE_CASES, max_length=8)


@pytest.mark.integration
def test_cased_vocabularies_and_roberta_style_templates_match_too(minilm_tokenizer_json):
    spec = json.loads(minilm_tokenizer_json.read_text(encoding="utf-8"))
    texts = [row["text"] for row in read_banking77("test")] + EDGE_CASES
    cased = spec | {"normalizer": spec["normalizer"] | {"lowercase": False}}
    assert _assert_same_ids_or_fallback(cased, texts, 128) > 3000
    # MPNet's tokenizer: the same WordPiece with RobertaProcessing around the text.
    roberta = spec | {"post_processor": json.loads(processors.RobertaProcessing(("[SEP]", 102), ("[CLS]", 101))
                                                   .__getstate__())}
    assert _assert_same_ids_or_fallback(roberta, texts, 128) > 3000


def test_text_it_cannot_match_exactly_is_left_to_the_rust_tokenizer(tiny_bert_dir):
    spec = json.loads((tiny_bert_dir / "tokenizer.json").read_text(encoding="utf-8"))
    fast = _fast(spec, 128)
    for text in ("naïve café", "tab\tseparated", "what is [MASK] here", "[cls] lower-case special", "中文"):
        assert fast.ids(text) is None, text
    assert fast.ids("how do I top up?") == _rust(spec, 128).encode("how do I top up?").ids


def test_tokenizers_that_are_not_bert_wordpiece_get_no_fast_path(tiny_bert_dir):
    spec = json.loads((tiny_bert_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert _fast(spec, 128) is not None
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    assert AsciiWordPiece.from_tokenizer(bpe, 128) is None
    other_normalizer = spec | {"normalizer": json.loads(normalizers.NFKC().__getstate__())}
    assert _fast(other_normalizer, 128) is None
    pair_types = spec | {"post_processor": json.loads(processors.TemplateProcessing(
        single="[CLS] $A:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]).__getstate__())}
    assert _fast(pair_types, 128) is None, "non-zero token types: not the fast path"
    assert _fast(spec, 2) is None, "no room for text between the special tokens"
