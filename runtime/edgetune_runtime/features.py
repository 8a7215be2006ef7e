"""Tokenizer output → the int64 arrays the ONNX graph takes, padded only as far as each batch needs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy

from edgetune_runtime.errors import BundleError

# Graph inputs the runtime can feed, and which field of a tokenizer encoding each comes from.
FEEDABLE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class FeatureBuilder:
    """Builds the feed dict for a batch of encodings, for exactly the inputs the graph declares."""

    def __init__(self, input_names: Sequence[str], pad_id: int, where: str) -> None:
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

    def single(self, encoding) -> dict[str, numpy.ndarray]:
        """Feeds for one text: no padding, no sorting; the latency path, so plain calls and no helpers."""
        input_ids = numpy.array(encoding.ids, dtype=numpy.int64).reshape(1, -1)
        feeds = {"input_ids": input_ids}
        if self._wants_mask:  # one text is never padded, so every position is attended to
            feeds["attention_mask"] = numpy.ones(input_ids.shape, dtype=numpy.int64)
        if self._wants_types:
            feeds["token_type_ids"] = numpy.array(encoding.type_ids, dtype=numpy.int64).reshape(1, -1)
        return feeds

    def batch(self, encodings: Sequence) -> dict[str, numpy.ndarray]:
        """Feeds for several texts, right-padded to the longest of them (dynamic padding)."""
        if len(encodings) == 1:
            return self.single(encodings[0])
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
