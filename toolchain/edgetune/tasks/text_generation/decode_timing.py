"""First-token latency and decode speed of several decoders, timed in alternating turns on the same prompts.

Prefill (the prompt's one pass, what the user waits for before the first token) and decoding (one
token a step, what sets the reading speed) scale differently under quantisation (int4 speeds up
decoding, not prefill: NOTES), so they are timed apart. Both go through the one timing loop of the
project (`edgetune_runtime.timing.interleaved_timings`), so load on the machine falls on every
decoder alike.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

import numpy

from edgetune_runtime.tasks.generation.decoder import Decoder, KVCache
from edgetune_runtime.timing import interleaved_timings


def time_decoders(decoders: Mapping[str, Decoder], prompts: list[list[int]], new_tokens: int
                  ) -> dict[str, dict[str, float]]:
    """Per decoder: median first-token ms over `prompts` and decode tokens/s over `new_tokens` greedy steps."""
    first_token = interleaved_timings(
        {name: (lambda index, decoder=decoder: decoder.forward(prompts[index], decoder.new_cache()))
         for name, decoder in decoders.items()}, len(prompts), warmup=1)

    # Decoding starts from each decoder's own prefilled cache; `forward` replaces the cache's arrays
    # rather than writing into them, so a shallow copy per run leaves the prefilled one intact.
    prefilled: dict[str, list[tuple[KVCache, int]]] = {}
    for name, decoder in decoders.items():
        prefilled[name] = []
        for prompt in prompts:
            cache = decoder.new_cache()
            prefilled[name].append((cache, int(numpy.argmax(decoder.forward(prompt, cache)[-1]))))

    def decode(decoder: Decoder, runs: list[tuple[KVCache, int]], index: int) -> None:
        start, token = runs[index]
        cache = KVCache(dict(start.arrays), start.length)
        for _ in range(new_tokens):  # a fixed count, not up to a stop token: every decoder does the same work
            token = int(numpy.argmax(decoder.forward([token], cache)[-1]))

    decoding = interleaved_timings(
        {name: (lambda index, decoder=decoder, runs=prefilled[name]: decode(decoder, runs, index))
         for name, decoder in decoders.items()}, len(prompts), warmup=1)
    return {name: {"first_token_ms": round(statistics.median(first_token[name]), 3),
                   "decode_tokens_per_s": round(new_tokens * 1000 / statistics.median(decoding[name]), 2)}
            for name in decoders}
