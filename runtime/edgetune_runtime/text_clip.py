"""Cut a long text by characters before the tokenizer, keeping exactly the tokens truncation would keep.

The tokenizer truncates to `max_length` tokens only after tokenising the whole text: 10 M characters
took 7.6 s and 1.2 GB, and a 200 MB line aborted the process. Only the first `max_length` tokens are
ever kept, and a token rarely covers more than a few characters of text, so `TextClipper` first
cuts the text to `max_length * CHARACTERS_PER_TOKEN` characters.

That bound is checked, not trusted (a normaliser drops control and zero-width characters, and runs of
spaces make no tokens): the cut text is tokenised, and it is used only if it overflows `max_length`
and its last kept token ends before a whitespace of the cut text. Then every kept token comes from
whole words that read the same in the full text (pre-tokenisers split words at whitespace and
normalisers work character by character), so the kept tokens are the full text's. Otherwise the cut
doubles and is checked again. A text that never fills `max_length` within `MAX_CLIPPED_CHARACTERS`
(megabytes of whitespace, or one giant "word") is cut there: such a text has no meaning to keep.
"""

from __future__ import annotations

import re

CHARACTERS_PER_TOKEN = 32
MAX_CLIPPED_CHARACTERS = 1 << 22
"""4 Mi characters: the most the tokenizer is ever given (~0.5 s), whatever the text."""
_WHITESPACE = re.compile(r"\s")


class TextClipper:
    """`clipper(text)`: `text`, or a prefix of it tokenising to the same truncated ids (safe across threads)."""

    def __init__(self, tokenizer, max_length: int) -> None:
        # The first cut is `CHARACTERS_PER_TOKEN` characters a token: more than a WordPiece or BPE token
        # spans in real text. Any start would be correct, since each cut is checked and doubled until it
        # holds; scanning the vocabulary for its longest entry instead cost ~13 ms of every cold start.
        self.bound = max_length * CHARACTERS_PER_TOKEN
        """Texts up to this many characters are handed to the tokenizer unchanged."""
        self._tokenizer = tokenizer  # truncation is set once at load and never changed afterwards

    def __call__(self, text: str) -> str:
        if len(text) <= self.bound:
            return text
        size = self.bound
        while size < len(text) and size < MAX_CLIPPED_CHARACTERS:
            cut = text[:size]
            encoding = self._tokenizer.encode(cut)
            if encoding.overflowing and self._ends_before_whitespace(cut, encoding):
                return cut
            size *= 2
        return text[:min(size, MAX_CLIPPED_CHARACTERS)]

    @staticmethod
    def _ends_before_whitespace(cut: str, encoding) -> bool:
        kept_ends = [end for (start, end), special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True)
                     if not special]
        return bool(kept_ends) and _WHITESPACE.search(cut, max(kept_ends)) is not None
