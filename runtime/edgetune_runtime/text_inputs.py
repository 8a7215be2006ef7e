"""Checks on the texts handed to a bundle: a list of str, each valid Unicode that the tokenizer can read."""

from __future__ import annotations

from collections.abc import Sequence

from edgetune_runtime.errors import InputError


def check_texts(texts: Sequence[str]) -> list[str]:
    """`texts` as a list, each item checked: a non-string is a TypeError, a lone surrogate an InputError."""
    if isinstance(texts, str):
        raise TypeError("predict expects a list of texts, not a single string")
    texts = texts if isinstance(texts, list) else list(texts)  # tuples, arrays, Series and generators too
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"item {index} is {type(text).__name__}, not text")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                # Lone surrogates (undecodable bytes smuggled in by surrogateescape, or broken UTF-16)
                # are not text the tokenizer can read; name them instead of failing inside it.
                raise InputError(f"item {index}: character {error.start} is a lone surrogate "
                                 f"{text[error.start]!r}, not valid Unicode text; decode the input as UTF-8 "
                                 "(errors='replace' turns bad bytes into U+FFFD)") from None
    return texts
