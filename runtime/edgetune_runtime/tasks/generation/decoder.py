"""One decode loop over a KV-cache decoder graph, with onnxruntime and numpy only.

The graph is onnxruntime-genai's model-builder layout, described by its `genai_config.json`:
inputs `input_ids`, `attention_mask` and one past key and value per layer; outputs `logits` for
every position and one present key and value per layer. Driving it with a plain session gave the
same tokens as onnxruntime-genai's own generator at 67 against 70 tokens/s (see
../shared/NOTES-chat-and-edge.md), so the runtime needs no generator library. This is the one copy
of the loop: the toolchain's parity gate, its quantisation scoring and the runtime's bundles all
step through `Decoder`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from edgetune_runtime.errors import BundleError

GENAI_CONFIG = "genai_config.json"

_NUMPY_TYPES = {"tensor(float)": numpy.float32, "tensor(float16)": numpy.float16, "tensor(bfloat16)": numpy.float32}


@dataclass(frozen=True)
class DecoderLayout:
    """What the decode loop needs from `genai_config.json`: names and shapes of the cache."""

    model_file: str
    layers: int
    kv_heads: int
    head_size: int
    context_length: int
    vocab_size: int
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    position_ids: str | None = None
    logits: str = "logits"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_genai_config(cls, config: dict, where: str = GENAI_CONFIG) -> DecoderLayout:
        try:
            model = config["model"]
            decoder = model["decoder"]
            inputs, outputs = decoder.get("inputs", {}), decoder.get("outputs", {})
            eos = model.get("eos_token_id", [])
            layout = cls(
                model_file=str(decoder["filename"]), layers=int(decoder["num_hidden_layers"]),
                kv_heads=int(decoder["num_key_value_heads"]), head_size=int(decoder["head_size"]),
                context_length=int(model["context_length"]), vocab_size=int(model["vocab_size"]),
                input_ids=inputs.get("input_ids", "input_ids"),
                attention_mask=inputs.get("attention_mask", "attention_mask"),
                position_ids=inputs.get("position_ids"),
                logits=outputs.get("logits", "logits"),
                past_key=inputs.get("past_key_names", cls.past_key),
                past_value=inputs.get("past_value_names", cls.past_value),
                present_key=outputs.get("present_key_names", cls.present_key),
                present_value=outputs.get("present_value_names", cls.present_value),
                eos_token_ids=tuple(int(token) for token in (eos if isinstance(eos, list) else [eos])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{where}: not an onnxruntime-genai decoder config ({error!r} missing or malformed); "
                              f"rebuild the model with the toolchain's export") from None
        if not (0 < layout.layers <= 1024 and 0 < layout.kv_heads <= 4096 and 0 < layout.head_size <= 4096
                and 0 < layout.context_length <= 1 << 20 and 0 < layout.vocab_size <= 1 << 22):
            raise BundleError(f"{where}: decoder sizes out of range (layers {layout.layers}, kv heads "
                              f"{layout.kv_heads}, head size {layout.head_size}, context {layout.context_length}, "
                              f"vocabulary {layout.vocab_size})")
        return layout

    @classmethod
    def from_directory(cls, directory: Path) -> DecoderLayout:
        path = Path(directory) / GENAI_CONFIG
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BundleError(f"{path}: cannot read the generation config ({error})") from None
        return cls.from_genai_config(config, str(path))


@dataclass
class KVCache:
    """The past keys and values of one sequence; each generation (and each thread) owns its own."""

    arrays: dict[str, numpy.ndarray] = field(default_factory=dict)
    length: int = 0


class Decoder:
    """Steps a KV-cache decoder: feed tokens, get the next-token logits, the cache grows by as many."""

    def __init__(self, session, layout: DecoderLayout) -> None:
        self.session = session
        self.layout = layout
        types = {meta.name: meta.type for meta in session.get_inputs()}
        missing = [name for name in (layout.input_ids, layout.attention_mask, layout.past_key % 0) if name not in types]
        if missing:
            raise BundleError(f"the decoder graph has no input {missing[0]!r} that genai_config.json names; "
                              f"the model and its config do not belong together")
        self.cache_dtype = _NUMPY_TYPES.get(types[layout.past_key % 0], numpy.float32)
        self.output_names = [meta.name for meta in session.get_outputs()]

    @classmethod
    def from_directory(cls, directory: Path, **session_kwargs) -> Decoder:
        """A decoder over `directory/genai_config.json` and the model file it names."""
        from edgetune_runtime.session import create_session

        layout = DecoderLayout.from_directory(directory)
        return cls(create_session(Path(directory) / layout.model_file, **session_kwargs), layout)

    def new_cache(self) -> KVCache:
        empty = numpy.zeros((1, self.layout.kv_heads, 0, self.layout.head_size), self.cache_dtype)
        arrays = {}
        for layer in range(self.layout.layers):
            arrays[self.layout.past_key % layer] = empty
            arrays[self.layout.past_value % layer] = empty
        return KVCache(arrays)

    def forward(self, token_ids: list[int] | numpy.ndarray, cache: KVCache) -> numpy.ndarray:
        """Logits (len(token_ids), vocab) for the new tokens, which are appended to `cache`."""
        tokens = numpy.asarray(token_ids, dtype=numpy.int64).reshape(1, -1)
        total = cache.length + tokens.shape[1]
        if total > self.layout.context_length:
            raise BundleError(f"{total} tokens exceed the model's context of {self.layout.context_length}")
        feeds = {self.layout.input_ids: tokens, self.layout.attention_mask: numpy.ones((1, total), numpy.int64),
                 **cache.arrays}
        if self.layout.position_ids:
            feeds[self.layout.position_ids] = numpy.arange(cache.length, total, dtype=numpy.int64).reshape(1, -1)
        results = dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
        for layer in range(self.layout.layers):
            cache.arrays[self.layout.past_key % layer] = results[self.layout.present_key % layer]
            cache.arrays[self.layout.past_value % layer] = results[self.layout.present_value % layer]
        cache.length = total
        return results[self.layout.logits][0]

    def sequence_logits(self, token_ids: list[int]) -> numpy.ndarray:
        """Logits at every position of `token_ids` from a fresh cache (teacher forcing, for scoring)."""
        return self.forward(token_ids, self.new_cache())

    def tokens(self, prompt_ids: list[int], choose: Callable[[numpy.ndarray], int], max_new_tokens: int,
               stop_ids: tuple[int, ...] | None = None) -> Iterator[int]:
        """Yield each new token `choose(next-token logits)` picks, until a stop token (yielded) or `max_new_tokens`.

        The one decode loop: greedy, sampling and the golden check differ only in `choose`. The cache is
        this call's own, so concurrent calls on one session do not share state; closing the generator
        stops decoding at once. Decoding also ends when the context is full.
        """
        stop = set(self.layout.eos_token_ids if stop_ids is None else stop_ids)
        if max_new_tokens <= 0:
            return
        cache = self.new_cache()
        logits = self.forward(prompt_ids, cache)[-1]
        for produced in range(1, max_new_tokens + 1):
            token = int(choose(logits))
            yield token
            if token in stop or produced == max_new_tokens or cache.length >= self.layout.context_length:
                return
            logits = self.forward([token], cache)[-1]

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: tuple[int, ...] | None = None) -> list[int]:
        """Greedy continuation of `prompt_ids`, stopping after a stop token (included) or `max_new_tokens`."""
        return list(self.tokens(prompt_ids, numpy.argmax, max_new_tokens, stop_ids))
