"""Text out of a growing list of token ids, one safe piece at a time.

A byte-level BPE token can hold half of a UTF-8 character (an emoji is often 2-4 tokens), and a
SentencePiece decoder drops the leading space of whatever it decodes first. So each step decodes
a short window that starts a few tokens back (`_prefix_offset`) and emits only what the window
adds beyond the text already emitted, and nothing while the window ends in U+FFFD (an incomplete
character). This is the scheme vLLM and text-generation-inference use.

Stop strings are matched on the text: anything that could still be the start of a stop string
is held back until the next token decides it.
"""

from __future__ import annotations

from collections.abc import Sequence

INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    """Feed token ids with `push`; each call returns the newly completed text ('' while a character is partial)."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        emitted = self._decode(self._ids[self._prefix_offset:self._read_offset])
        window = self._decode(self._ids[self._prefix_offset:])
        if len(window) <= len(emitted) or window.endswith(INCOMPLETE):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return window[len(emitted):]

    def flush(self) -> str:
        """What is left at the end (a character the tokens never completed comes out as U+FFFD)."""
        emitted = self._decode(self._ids[self._prefix_offset:self._read_offset])
        window = self._decode(self._ids[self._prefix_offset:])
        self._prefix_offset = self._read_offset = len(self._ids)
        return window[len(emitted):] if len(window) > len(emitted) else ""


class StopStrings:
    """Holds back text that may begin a stop string; says when one has appeared."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        self.stop_strings = tuple(text for text in stop_strings if text)
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """The part of `text` (after what is held) that is safe to emit; sets `stopped` at a stop string."""
        if not self.stop_strings:
            return text
        self._pending += text
        found = [index for index in (self._pending.find(stop) for stop in self.stop_strings) if index >= 0]
        if found:
            self.stopped = True
            safe, self._pending = self._pending[:min(found)], ""
            return safe
        hold = max((length for stop in self.stop_strings for length in range(1, len(stop))
                    if self._pending.endswith(stop[:length])), default=0)
        safe = self._pending[:len(self._pending) - hold]
        self._pending = self._pending[len(safe):]
        return safe

    def flush(self) -> str:
        """The held text once generation ended for another reason: it was no stop string after all."""
        safe, self._pending = self._pending, ""
        return safe
