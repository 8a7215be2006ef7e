"""A pure-Python WordPiece for the latency path: one printable-ASCII text, BERT-style tokenizer.

`tokenizers` (Rust) costs ~0.045 ms per short text in a tight loop but ~0.18 ms right after a
session run, when its code and tables have left the CPU caches; for a 3 ms int8 MiniLM that alone
is 5% of the call. BERT's pipeline on printable ASCII is simple enough to do exactly in a few
Python operations (lowercase; split on spaces and punctuation; greedy longest-match WordPiece,
cached per word): ~0.005 ms in a tight loop, 0.045-0.07 ms right after a session run. It is used
only where it gives the Rust tokenizer's ids exactly: a tokenizer whose normaliser, pre-tokeniser,
model and template are BERT's (MiniLM, MPNet, BERT, DistilBERT), on text that is printable ASCII
and holds no special token. Anything else — other tokenizers, accents, CJK, control characters,
"[MASK]" in the text — returns None and the caller uses `tokenizers`. Tests compare both on every
Banking77 and SST-2 text.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from itertools import chain

MAX_CACHED_WORDS = 65536
"""Words whose pieces are remembered; an app's queries reuse a small vocabulary, so this rarely fills."""

_PROCESSORS = ("TemplateProcessing", "BertProcessing", "RobertaProcessing")


class AsciiWordPiece:
    """Token ids of one text, equal to the Rust tokenizer's with truncation at `max_length`."""

    def __init__(self, lookup: Callable[[str], int | None], unk_id: int, prefix: str, max_word_chars: int,
                 lowercase: bool, before: list[int], after: list[int], special_texts: list[str],
                 max_length: int) -> None:
        self._lookup = lookup
        self._unk = [unk_id]
        self._prefix = prefix
        self._max_word_chars = max_word_chars
        self._lowercase = lowercase
        self._before = before
        self._after = after
        self._max_pieces = max_length - len(before) - len(after)
        # A text containing a special token's text is left to `tokenizers`, which matches those first.
        special = sorted({text.lower() for text in special_texts if text})
        self._special = re.compile("|".join(map(re.escape, special))) if special else None
        # Where every special token starts with the same character ("[" for BERT's), a substring test
        # for it skips the regular expression on almost every text.
        first_characters = {text[0] for text in special}
        self._special_start = first_characters.pop() if len(first_characters) == 1 else ""
        # On printable ASCII, BERT's pre-tokeniser splits at spaces and makes each punctuation mark a word:
        # spaced out by one str.translate, then str.split.
        self._space_out_punctuation = str.maketrans({mark: f" {mark} " for mark in string.punctuation})
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer, max_length: int) -> AsciiWordPiece | None:
        """The fast path for a loaded `tokenizers.Tokenizer`, or None when it is not a BERT-style WordPiece.

        Its pieces are looked up in the Rust model's own vocabulary, one word at a time and then cached,
        rather than copied into a dict: copying 30k entries measured ~30 ms of cold start.
        """
        normalizer, pre_tokenizer, processor = (_state(component) for component in (
            tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.post_processor))
        model = tokenizer.model
        if (normalizer.get("type") != "BertNormalizer" or pre_tokenizer.get("type") != "BertPreTokenizer"
                or type(model).__name__ != "WordPiece" or processor.get("type") not in _PROCESSORS):
            return None
        unk_id = model.token_to_id(model.unk_token)
        template = _single_template(processor)
        if unk_id is None or template is None:
            return None
        before, after = template
        if max_length <= len(before) + len(after):
            return None
        special_texts = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
        return cls(model.token_to_id, unk_id, model.continuing_subword_prefix, model.max_input_chars_per_word,
                   bool(normalizer.get("lowercase", True)), before, after, special_texts, max_length)

    def ids(self, text: str) -> list[int] | None:
        """The text's token ids with the template's special tokens, or None: use `tokenizers` for it."""
        if not (text.isascii() and text.isprintable()):
            return None
        lowered = text.lower()
        if self._special is not None and self._special_start in lowered and self._special.search(lowered):
            return None
        words = (lowered if self._lowercase else text).translate(self._space_out_punctuation).split()
        # Few, flat operations, the loop over words in C: each Python step costs ~5-10 us right after a
        # session run, when the caches are cold. Usually every word has been seen before.
        try:
            pieces = list(chain.from_iterable(map(self._cache.__getitem__, words)))
        except KeyError:
            pieces = list(chain.from_iterable(map(self._pieces, words)))
        return self._before + pieces[:self._max_pieces] + self._after

    def _pieces(self, word: str) -> list[int]:
        word_ids = self._cache.get(word)
        return word_ids if word_ids is not None else self._remember(word)

    def _remember(self, word: str) -> list[int]:
        if len(self._cache) >= MAX_CACHED_WORDS:
            self._cache.clear()
        word_ids = self._cache[word] = self._word_ids(word)
        return word_ids

    def _word_ids(self, word: str) -> list[int]:
        # Greedy longest match first; a word with any part not in the vocabulary is one unknown token.
        if len(word) > self._max_word_chars:
            return self._unk
        ids, start, lookup = [], 0, self._lookup
        while start < len(word):
            for end in range(len(word), start, -1):
                piece_id = lookup(word[start:end] if start == 0 else self._prefix + word[start:end])
                if piece_id is not None:
                    ids.append(piece_id)
                    start = end
                    break
            else:
                return self._unk
        return ids


def _state(component) -> dict:
    """A tokenizer component's settings as in tokenizer.json ({} when the tokenizer has none)."""
    return json.loads(component.__getstate__()) if component is not None else {}


def _single_template(processor: dict) -> tuple[list[int], list[int]] | None:
    """Ids the post-processor puts before and after one text; None if any gets a non-zero token type."""
    kind = processor["type"]
    if kind in ("BertProcessing", "RobertaProcessing"):
        try:
            return [int(processor["cls"][1])], [int(processor["sep"][1])]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    special_tokens = processor.get("special_tokens") or {}
    before: list[int] = []
    after: list[int] = []
    seen_text = False
    for item in processor.get("single") or []:
        if "Sequence" in item:
            if seen_text or item["Sequence"].get("id") != "A" or item["Sequence"].get("type_id", 0) != 0:
                return None
            seen_text = True
        elif "SpecialToken" in item:
            token = special_tokens.get(item["SpecialToken"].get("id"))
            if token is None or item["SpecialToken"].get("type_id", 0) != 0:
                return None
            (after if seen_text else before).extend(int(token_id) for token_id in token.get("ids", []))
        else:
            return None
    return (before, after) if seen_text else None
