"""Tokenizer output → the int64 arrays the ONNX graph takes, padded only as far as each batch needs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy

from edgetune_runtime.errors import BundleError

# Graph inputs the runtime can feed, and which field of a tokenizer encoding each comes from.
FEEDABLE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class FeatureBuilder:
    """Builds the feed dict for a batch of encodings, for exactly the inputs the graph declares."""

    def __init__(self, input_names: Sequence[str], pad_id: int, where: str, max_length: int = 512,
                 single_text_types_are_zero: bool = False) -> None:
        unknown = [name for name in input_names if name not in FEEDABLE_INPUTS]
        if unknown:
            raise BundleError(f"{where}: the model takes input {unknown[0]!r}, which this runtime cannot feed "
                              f"(it feeds {', '.join(FEEDABLE_INPUTS)})")
        if "input_ids" not in input_names:
            raise BundleError(f"{where}: the model takes no 'input_ids'; it is not a text classifier this runtime "
                              "can feed")
        self.input_names = tuple(input_names)
        self.pad_id = pad_id
        self._wants_types = "token_type_ids" in self.input_names
        self._wants_mask = "attention_mask" in self.input_names
        # One text's mask is all ones and its token types all zeros: views of these read-only rows, one
        # per length, made once (no allocation and no numpy call per text; ONNX Runtime never writes its
        # inputs, so threads can share them). Right after a session run every numpy call costs ~10 us
        # while the CPU caches refill, so the latency path makes as few as it can.
        ones = numpy.ones((1, max_length), dtype=numpy.int64)
        zeros = numpy.zeros((1, max_length), dtype=numpy.int64)
        ones.flags.writeable = zeros.flags.writeable = False
        constant_rows = {"attention_mask": ones, "token_type_ids": zeros}
        self.zero_type_feeds: list[dict[str, numpy.ndarray]] = [
            {name: constant_rows[name][:, :size] for name in self.input_names if name != "input_ids"}
            for size in range(max_length + 1)]
        """Index by token count: every feed but input_ids for one text whose token types are all zero."""
        # A tokenizer's template gives one text's pieces fixed token types (0 for BERT's "[CLS] $A [SEP]"),
        # whatever the text, so the caller can check it once (`Bundle` encodes a probe text).
        self.single_text_types_are_zero = single_text_types_are_zero

    def single(self, ids: list[int], type_ids: list[int] | None = None) -> dict[str, numpy.ndarray]:
        """Feeds for one text (`type_ids` None: all zero); never padded, so every position is attended to."""
        size = len(ids)
        if size < len(self.zero_type_feeds) and (type_ids is None or self.single_text_types_are_zero):
            return {"input_ids": numpy.array([ids], dtype=numpy.int64), **self.zero_type_feeds[size]}
        feeds = {"input_ids": numpy.array([ids], dtype=numpy.int64)}
        if self._wants_mask:
            feeds["attention_mask"] = numpy.ones((1, size), dtype=numpy.int64)
        if self._wants_types:
            feeds["token_type_ids"] = (numpy.zeros((1, size), dtype=numpy.int64) if type_ids is None
                                       else numpy.array([type_ids], dtype=numpy.int64))
        return feeds

    def batch(self, encodings: Sequence) -> dict[str, numpy.ndarray]:
        """Feeds for several texts, right-padded to the longest of them (dynamic padding)."""
        if len(encodings) == 1:
            return self.single(encodings[0].ids, encodings[0].type_ids)
        length = max(len(encoding.ids) for encoding in encodings)
        shape = (len(encodings), length)
        input_ids = numpy.full(shape, self.pad_id, dtype=numpy.int64)
        attention_mask = numpy.zeros(shape, dtype=numpy.int64)
        token_type_ids = numpy.zeros(shape, dtype=numpy.int64)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            input_ids[row, :size] = encoding.ids
            attention_mask[row, :size] = 1
            token_type_ids[row, :size] = encoding.type_ids
        arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {name: arrays[name] for name in self.input_names}
