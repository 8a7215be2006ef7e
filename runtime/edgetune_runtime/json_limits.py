"""JSON from files other people wrote (manifest, golden examples, bench results), read with bounded nesting.

`json.loads` recurses once per nesting level: a file of 100 000 `[` is a RecursionError traceback
(or, with a raised recursion limit, a crashed interpreter). `loads_bounded` measures the depth first
with one linear scan that skips string contents, and refuses anything deeper than `MAX_JSON_DEPTH`
as `JSONTooDeep` (a ValueError) whose message names the file, so callers turn it into their own one-line error.
"""

from __future__ import annotations

import json
import re

MAX_JSON_DEPTH = 64
"""Deeper than any file edgetune writes (a manifest nests 4 levels) and far below the recursion limit."""

# A JSON string (escapes included) or one bracket: strings are skipped whole, so brackets inside them do not count.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (0 for a scalar); malformed text is not judged here."""
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


class JSONTooDeep(ValueError):
    """The text nests deeper than the bound; the message names the file."""


def loads_bounded(text: str | bytes, where: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """`json.loads(text)`, refusing nesting deeper than `max_depth` (`JSONTooDeep`, naming `where`).

    Malformed JSON raises json's own `JSONDecodeError` (a ValueError), as `json.loads` does.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise json.JSONDecodeError(f"not UTF-8 text ({error.reason})", "", error.start) from None
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONTooDeep(f"{where}: JSON nested {depth} levels deep; at most {max_depth} are read")
    try:
        return json.loads(text)
    except RecursionError:  # unreachable after the depth check; kept so no input can become a traceback
        raise JSONTooDeep(f"{where}: JSON nested too deeply to read") from None
