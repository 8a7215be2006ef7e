"""onnxruntime-genai's C++ generator as the decode engine of a generation bundle (`edgetune-runtime[chat]`).

Measured on the same int4 SmolLM2 bundle at one thread (benchmarks/README.md, chat runtime): its
generator decoded 151 tokens/s at 216 MB peak RSS against the plain onnxruntime loop's 137 tokens/s
at 249 MB, with the same greedy tokens, and an app can drive the same bundle files through its C, C#,
Java and Objective-C APIs. So it decodes whenever it is installed (`engine="auto"`), and the plain loop
(`decoder.py`, onnxruntime and numpy only) runs where it is not, or where a call needs logits
(teacher-forced scoring, the bench's bare onnxruntime loop).

One `og.Model` per bundle (the weights, loaded once); each call builds its own `og.Generator` (its
own KV cache, sized to that call's prompt plus answer, and its own random generator seeded by the
call's seed), so concurrent calls share nothing but the read-only model. Token choice is
onnxruntime-genai's: greedy picks the same tokens as the plain loop (tested), repetition penalty
follows the same rule, and a seeded sample is reproducible on this engine (its random stream is not
numpy's, so the same seed samples other tokens than the plain loop does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.tasks.generation.sampling import Sampling

GENAI = "onnxruntime-genai"
PLAIN = "onnxruntime"
ENGINES = ("auto", GENAI, PLAIN)
CHAT_EXTRA = "pip install 'edgetune-runtime[chat]'"
_SEED_RANGE = 2**31
"""onnxruntime-genai's random_seed is a 32-bit int; larger seeds are reduced modulo this."""


def genai_installed() -> bool:
    try:
        import onnxruntime_genai  # noqa: F401 (an import, not a spec lookup: a broken install counts as absent)
    except ImportError:
        return False
    return True


def choose_engine(choice: str, *, providers: Sequence[str] | None, session_options, tuning: dict | None) -> str:
    """The engine that decodes: `choice`, or for "auto" onnxruntime-genai where it is installed and can run the
    bundle as asked (CPU, no custom `onnxruntime.SessionOptions`, no optimisers the manifest turns off)."""
    if choice not in ENGINES:
        raise InputError(f"engine: {choice!r} is not one of {', '.join(ENGINES)}")
    if choice == PLAIN:
        return PLAIN  # without importing onnxruntime-genai, which would map its libraries for nothing
    blocker = _genai_blocker(providers, session_options, tuning or {})
    if choice == "auto":
        return GENAI if blocker is None else PLAIN
    if choice == GENAI and blocker is not None:
        raise InputError(f"engine {GENAI}: {blocker}; use engine 'onnxruntime' (or 'auto')")
    return choice


def _genai_blocker(providers: Sequence[str] | None, session_options, tuning: dict) -> str | None:
    if list(providers or ["CPUExecutionProvider"]) != ["CPUExecutionProvider"]:
        return "the runtime drives it on the CPU provider only"
    if session_options is not None:
        return "an onnxruntime.SessionOptions cannot be handed to it"
    if tuning.get("disabled_optimizers"):
        return "the bundle turns off graph optimisers, which it cannot"
    if not genai_installed():
        return f"it is not installed ({CHAT_EXTRA})"
    return None


class GenaiEngine:
    """The bundle's model in onnxruntime-genai; `tokens` decodes one answer with a generator of its own."""

    def __init__(self, directory: Path, stop_token_ids: Sequence[int], *, intra_op_threads: int = 0,
                 inter_op_threads: int = 0, config_entries: dict | None = None) -> None:
        import onnxruntime_genai as og

        self._og = og
        session_options: dict = {}
        # 0 leaves the count to ONNX Runtime, as the plain session does.
        if intra_op_threads:
            session_options["intra_op_num_threads"] = intra_op_threads
        if inter_op_threads:
            session_options["inter_op_num_threads"] = inter_op_threads
        if config_entries:
            session_options["config_entries"] = dict(config_entries)
        # The bundle's stop tokens are the generator's end-of-sequence tokens, so it stops (and min_length
        # holds them back) exactly where the plain loop does.
        overlay = {"model": {"eos_token_id": list(stop_token_ids) or None, "decoder": {
            "session_options": session_options}}}
        if not stop_token_ids:
            del overlay["model"]["eos_token_id"]
        try:
            config = og.Config(str(directory))
            config.overlay(json.dumps(overlay))
            self.model = og.Model(config)
        except Exception as error:  # its binding raises a bare RuntimeError / OSError with the C++ message
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BundleError(f"{directory}: onnxruntime-genai cannot load the model ({first})") from None

    @staticmethod
    def version() -> str:
        import onnxruntime_genai as og

        return og.__version__

    def generator(self, prompt_ids: list[int], *, max_length: int, min_length: int = 0,
                  sampling: Sampling | None = None, seed: int | None = None):
        """A fresh `og.Generator` with the prompt appended (the prefill ran): `generate_next_token` picks each
        new token. Its KV cache holds `max_length` tokens: the call's prompt and answer, not the whole context."""
        og = self._og
        sampling = sampling or Sampling()
        options: dict = {"max_length": max_length, "min_length": min(min_length, max_length),
                         "do_sample": not sampling.greedy, "repetition_penalty": float(sampling.repetition_penalty)}
        if not sampling.greedy:
            options |= {"temperature": float(sampling.temperature), "top_k": int(sampling.top_k),
                        "top_p": float(sampling.top_p)}
            if seed is not None:
                options["random_seed"] = seed % _SEED_RANGE
        params = og.GeneratorParams(self.model)
        params.set_search_options(**options)
        generator = og.Generator(self.model, params)
        generator.append_tokens(prompt_ids)
        return generator

    def tokens(self, prompt_ids: list[int], sampling: Sampling, seed: int | None, max_new_tokens: int,
               context_length: int, min_new_tokens: int = 0) -> Iterator[int]:
        """Yield each new token until a stop token (yielded), `max_new_tokens` or a full context, as
        `Decoder.tokens` does; before `min_new_tokens` stop tokens cannot be chosen. Closing the iterator
        frees this call's generator and KV cache at once."""
        if max_new_tokens <= 0:
            return
        max_length = min(len(prompt_ids) + max_new_tokens, context_length)
        if max_length <= len(prompt_ids):
            raise BundleError(f"{len(prompt_ids)} tokens fill the model's context of {context_length}")
        generator = self.generator(prompt_ids, max_length=max_length, min_length=len(prompt_ids) + min_new_tokens,
                                   sampling=sampling, seed=seed)
        try:
            while not generator.is_done():
                generator.generate_next_token()
                yield int(generator.get_next_tokens()[0])
        finally:
            del generator
