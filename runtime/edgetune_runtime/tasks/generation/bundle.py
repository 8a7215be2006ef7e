"""Text generation: `GenerationBundle`, a chat model's part of a bundle (chat format, decoding, golden prompts).

`generate` answers a prompt or a conversation; `stream` yields the answer as it is decoded, in whole
characters, and stops decoding when the caller closes it. The decode engine is onnxruntime-genai's
generator where it is installed (`edgetune-runtime[chat]`), else the plain onnxruntime loop of
`decoder.py`; `engine=` chooses (genai_engine.py says why and how they differ). Each call owns its KV
cache and its random generator, and the one model (an ONNX Runtime session, or an `og.Model`) is safe
for concurrent calls, so calls from many threads give the same results as the same calls one after another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgetune_runtime.envelope import Bundle
from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.tasks.generation.chat_template import check_messages
from edgetune_runtime.tasks.generation.decoder import GENAI_CONFIG, Decoder, DecoderLayout
from edgetune_runtime.tasks.generation.genai_engine import GENAI, PLAIN, GenaiEngine, choose_engine
from edgetune_runtime.tasks.generation.sampling import Sampling, TokenChooser
from edgetune_runtime.tasks.generation.section import GenerationSection
from edgetune_runtime.tasks.generation.streaming import IncrementalDetokenizer, StopStrings

FinishReason = Literal["stop", "length"]
Conversation = str | Sequence[Mapping[str, str]]


@dataclass
class GenerationResult:
    """One answer: its text, the tokens the model chose and why it ended."""

    text: str
    token_ids: list[int]
    """Every token the model produced, the stop token included when one ended the answer."""
    finish_reason: FinishReason
    """"stop": a stop token or stop string ended it; "length": max_new_tokens or the context did."""
    prompt_tokens: int
    first_token_ms: float
    """From the call to the first new token: tokenising and the prompt's forward pass (prefill)."""
    decode_tokens_per_s: float | None
    """New tokens after the first, per second of decoding them; None with fewer than two tokens."""
    inter_token_ms: list[float] = field(default_factory=list)
    """Milliseconds between consecutive new tokens (one fewer than the tokens): what a streaming reader waits."""


@dataclass
class _Progress:
    """What a generation records while its pieces stream out; `GenerationBundle.generate` reads it."""

    prompt_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "length"
    started: float = 0.0
    token_times: list[float] = field(default_factory=list)
    """`perf_counter` when each new token was chosen."""


class GenerationBundle(Bundle):
    """A verified text-generation bundle. Use `Bundle.load(path)`.

    Sampling defaults are the bundle's (`generation.sampling` in the manifest; the toolchain writes the
    model's generation_config, or greedy): a call's `temperature`, `top_p`, `top_k` and
    `repetition_penalty` override them one by one, and temperature 0 decodes greedily.
    """

    def __init__(self, directory, manifest: dict, *, engine: str = "auto", **settings) -> None:
        self._engine_asked = engine
        self.engine = choose_engine(engine, providers=settings.get("providers"),
                                    session_options=settings.get("session_options"), tuning=manifest.get("session"))
        """What decodes: "onnxruntime-genai" (its generator) or "onnxruntime" (the plain loop)."""
        self.genai: GenaiEngine | None = None
        self._decoder: Decoder | None = None
        self._decoder_lock = threading.Lock()
        super().__init__(directory, manifest, **settings)

    def _read_section(self, section: dict, where: str) -> None:
        self.generation = GenerationSection.parse(section, where)
        if self.engine == GENAI and self.generation.genai_config != GENAI_CONFIG:
            # onnxruntime-genai reads the folder's genai_config.json, whatever the manifest names.
            if self._engine_asked != "auto":
                raise BundleError(f"{where}: generation.genai_config is {self.generation.genai_config!r}; "
                                  f"onnxruntime-genai reads only {GENAI_CONFIG}: use engine 'onnxruntime'")
            self.engine = PLAIN

    def _session_at_load(self) -> bool:
        # With onnxruntime-genai decoding, a second copy of the weights in a plain session would cost its
        # memory for nothing: that session opens only if a call needs logits (scoring, the bench's bare loop).
        return self.engine != GENAI

    @property
    def execution_provider(self) -> str:
        # onnxruntime-genai is driven on the CPU provider only (genai_engine.choose_engine); asking the plain
        # session would open it, and load the weights a second time, just to say so.
        return "CPUExecutionProvider" if self.genai is not None else super().execution_provider

    @property
    def decoder(self) -> Decoder:
        """The plain onnxruntime decode loop over the bundle's session (teacher-forced logits, the bare loop)."""
        if self._decoder is None:
            with self._decoder_lock:
                if self._decoder is None:
                    self._decoder = Decoder(self.session, self.layout)
        return self._decoder

    def _prepare(self, where: str) -> None:
        from tokenizers import Tokenizer

        config_path = self.directory / self.generation.genai_config
        layout = DecoderLayout.from_genai_config(_read_json(config_path), str(config_path))
        self.layout = layout
        if layout.model_file != self.typed_manifest.model:
            raise BundleError(f"{where}: {self.generation.genai_config} names model {layout.model_file!r} but the "
                              f"manifest's model is {self.typed_manifest.model!r}; rebuild the bundle")
        if self.generation.context_length > layout.context_length:
            raise BundleError(f"{where}: generation.context_length {self.generation.context_length} is longer than "
                              f"the model's {layout.context_length} in {self.generation.genai_config}")
        path = self.directory / self.typed_manifest.tokenizer
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust tokenizer raises a bare Exception for a file it cannot parse
            raise BundleError(f"{path}: cannot load the tokenizer ({error})") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        unknown = [token for token in self.generation.stop_token_ids if token >= layout.vocab_size]
        if unknown:
            raise BundleError(f"{where}: generation.stop_token_ids holds {unknown[0]}, past the model's vocabulary "
                              f"of {layout.vocab_size}")
        # The engine loads last, once every cheap check of the files it reads has passed.
        if self.engine == GENAI:
            settings = self._session_settings
            self.genai = GenaiEngine(self.directory, self.generation.stop_token_ids,
                                     intra_op_threads=settings["intra_op_threads"],
                                     inter_op_threads=settings["inter_op_threads"],
                                     config_entries=(self.manifest.get("session") or {}).get("config_entries"))
        else:
            self._decoder = Decoder(self.session, layout)

    @property
    def context_length(self) -> int:
        return self.generation.context_length

    # --- prompts ----------------------------------------------------------------------------------------------

    def conversation(self, messages_or_prompt: Conversation) -> list[dict[str, str]]:
        """The messages the model reads: a prompt becomes a user turn; the bundle's system prompt goes
        first when the conversation has no system turn."""
        if isinstance(messages_or_prompt, str):
            messages = [{"role": "user", "content": messages_or_prompt}]
        else:
            messages = check_messages(messages_or_prompt, "messages", self.generation.chat_format.system_after_first)
        if messages[0]["role"] != "system" and self.generation.system_prompt is not None:
            messages = [{"role": "system", "content": self.generation.system_prompt}, *messages]
        return messages

    def prompt_ids(self, messages_or_prompt: Conversation, max_new_tokens: int | None = None,
                   truncate: bool = False) -> list[int]:
        """Token ids of the rendered conversation, leaving room for `max_new_tokens` in the context.

        A longer prompt is refused (`InputError`) unless `truncate`: then the opening system turn is kept
        and the rest is cut from the front, keeping the last tokens.
        """
        max_new_tokens = self._max_new_tokens(max_new_tokens)
        messages = self.conversation(messages_or_prompt)
        chat_format = self.generation.chat_format
        ids = self._encode(chat_format.render(messages))
        room = self.context_length - max_new_tokens
        if len(ids) <= room:
            return ids
        if not truncate:
            raise InputError(f"the prompt is {len(ids)} tokens; with max_new_tokens {max_new_tokens} the context of "
                             f"{self.context_length} leaves room for {room}: shorten it, ask for fewer new tokens, "
                             "or pass truncate=True (keeps the system turn and the last tokens)")
        system_ids = self._encode(chat_format.system_turn(messages))
        if system_ids and ids[:len(system_ids)] == system_ids and len(system_ids) < room:
            return system_ids + ids[len(ids) - (room - len(system_ids)):]
        return ids[len(ids) - room:]

    def _encode(self, text: str) -> list[int]:
        # The chat format writes the special tokens itself, as apply_chat_template does.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _max_new_tokens(self, max_new_tokens: int | None) -> int:
        if max_new_tokens is None:
            return min(self.generation.max_new_tokens, self.context_length - 1)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) \
                or not 1 <= max_new_tokens < self.context_length:
            raise InputError(f"max_new_tokens: {max_new_tokens!r} must be a whole number from 1 to "
                             f"{self.context_length - 1} (the context is {self.context_length} tokens)")
        return max_new_tokens

    def _sampling(self, temperature: float | None, top_p: float | None, top_k: int | None,
                  repetition_penalty: float | None) -> Sampling:
        defaults = self.generation.sampling
        return Sampling(
            temperature=defaults.temperature if temperature is None else temperature,
            top_p=defaults.top_p if top_p is None else top_p,
            top_k=defaults.top_k if top_k is None else top_k,
            repetition_penalty=defaults.repetition_penalty if repetition_penalty is None else repetition_penalty,
        ).check("sampling")

    # --- generation -------------------------------------------------------------------------------------------

    def generate(self, messages_or_prompt: Conversation, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, top_k: int | None = None,
                 repetition_penalty: float | None = None, stop: Sequence[str] | None = None,
                 seed: int | None = None, truncate: bool = False, min_new_tokens: int = 0) -> GenerationResult:
        """The model's answer to a prompt (a user turn) or a conversation (`[{"role", "content"}, ...]`).

        `max_new_tokens` defaults to the bundle's; `stop` adds stop strings to the bundle's (the text is
        cut before the first one found); `seed` makes sampling reproducible. See `prompt_ids` for `truncate`.
        Before `min_new_tokens` new tokens, stop tokens cannot be chosen and stop strings do not end the
        answer (transformers' and vLLM's meaning): `edgetune-runtime bench` decodes a fixed count this way.
        """
        progress = _Progress(started=time.perf_counter())
        prompt = self.prompt_ids(messages_or_prompt, max_new_tokens, truncate)
        pieces = list(self._pieces(progress, prompt, max_new_tokens, temperature, top_p, top_k,
                                   repetition_penalty, stop, seed, min_new_tokens))
        return _result("".join(pieces), progress)

    def stream(self, messages_or_prompt: Conversation, max_new_tokens: int | None = None,
               temperature: float | None = None, top_p: float | None = None, top_k: int | None = None,
               repetition_penalty: float | None = None, stop: Sequence[str] | None = None,
               seed: int | None = None, truncate: bool = False, min_new_tokens: int = 0) -> Iterator[str]:
        """`generate`'s answer as pieces of text (whole characters) while it is decoded; joined, they are
        `generate(...).text`. Closing the generator (or leaving a loop over it) stops decoding."""
        # Arguments are checked now, not at the first `next`, so a bad call fails where it is made.
        progress = _Progress(started=time.perf_counter())
        prompt = self.prompt_ids(messages_or_prompt, max_new_tokens, truncate)
        self._sampling(temperature, top_p, top_k, repetition_penalty)
        _checked_stop(stop)
        _checked_min_new_tokens(min_new_tokens)
        return self._pieces(progress, prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty,
                            stop, seed, min_new_tokens)

    def _pieces(self, progress: _Progress, prompt: list[int], max_new_tokens: int | None,
                temperature: float | None, top_p: float | None, top_k: int | None,
                repetition_penalty: float | None, stop: Sequence[str] | None, seed: int | None,
                min_new_tokens: int = 0) -> Iterator[str]:
        sampling = self._sampling(temperature, top_p, top_k, repetition_penalty)
        limit = self._max_new_tokens(max_new_tokens)
        min_new_tokens = _checked_min_new_tokens(min_new_tokens)
        stop_strings = StopStrings([*self.generation.stop_strings, *_checked_stop(stop)])
        progress.prompt_tokens = len(prompt)
        stop_ids = set(self.generation.stop_token_ids)
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        if self.genai is not None:
            tokens = self.genai.tokens(prompt, sampling, seed, limit, self.context_length, min_new_tokens)
        else:
            chooser = TokenChooser(sampling, prompt, seed, banned_until=min_new_tokens,
                                   banned_ids=self.generation.stop_token_ids)
            tokens = self.decoder.tokens(prompt, chooser, limit, self.generation.stop_token_ids)
        try:
            for token in tokens:
                progress.token_times.append(time.perf_counter())
                progress.token_ids.append(token)
                if token in stop_ids:
                    progress.finish_reason = "stop"
                    break
                text = detokenizer.push(token)
                if len(progress.token_ids) < min_new_tokens:
                    if text:  # too early for a stop string to end the answer
                        yield text
                    continue
                piece = stop_strings.push(text)
                if piece:
                    yield piece
                if stop_strings.stopped:
                    progress.finish_reason = "stop"
                    return
            tail = stop_strings.push(detokenizer.flush())
            if stop_strings.stopped:
                progress.finish_reason = "stop"
            else:
                tail += stop_strings.flush()
            if tail:
                yield tail
        finally:
            tokens.close()  # frees this call's KV cache at once when the caller stops early

    def reference_ids(self, messages_or_prompt: Conversation, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of `answer` written as the assistant's turn, up to its end-of-turn token,
        the answer cut to fit the context: what perplexity of a reference answer scores (teacher-forced)."""
        messages = self.conversation(messages_or_prompt)
        chat_format = self.generation.chat_format
        prompt = self._encode(chat_format.render(messages))
        full = self._encode(chat_format.render([*messages, {"role": "assistant", "content": answer}],
                                               add_generation_prompt=False))
        if full[:len(prompt)] != prompt:
            raise InputError("the chat format renders the prompt differently with and without the answer, so the "
                             "answer's tokens cannot be told apart")
        if len(prompt) >= self.context_length:
            raise InputError(f"the prompt is {len(prompt)} tokens, beyond the context of {self.context_length}")
        answer_ids = full[len(prompt):]
        # The format may write a newline after the end-of-turn token: the model is not asked to write it.
        ends = [index for index, token in enumerate(answer_ids) if token in self.generation.stop_token_ids]
        if ends:
            answer_ids = answer_ids[:ends[-1] + 1]
        return prompt, answer_ids[:self.context_length - len(prompt)]

    def first_result(self, text: str) -> GenerationResult:
        """The first token of an answer to `text`: what cold start times."""
        return self.generate(text, max_new_tokens=1, truncate=True)

    # --- golden prompts ---------------------------------------------------------------------------------------

    def greedy_token_ids(self, messages_or_prompt: Conversation, max_new_tokens: int) -> list[int]:
        """Greedy tokens with no repetition penalty and no stop strings: what golden prompts record."""
        prompt = self.prompt_ids(messages_or_prompt, max_new_tokens)
        if self.genai is not None:  # verify checks the engine that answers
            return list(self.genai.tokens(prompt, Sampling(), None, max_new_tokens, self.context_length))
        return self.decoder.greedy(prompt, max_new_tokens, self.generation.stop_token_ids)

    def _parse_golden_example(self, example: object) -> tuple[list[dict[str, str]], list[int]]:
        if not isinstance(example, dict):
            raise TypeError("a golden example is not an object")
        messages, token_ids = example["messages"], example["token_ids"]
        if not isinstance(token_ids, list) or not token_ids or not all(
                isinstance(token, int) and not isinstance(token, bool) for token in token_ids):
            raise TypeError("token_ids is not a non-empty list of token ids")
        try:
            checked = check_messages(messages, "golden messages")
        except InputError as error:
            raise ValueError(str(error)) from None
        return checked, token_ids

    def _check_golden_example(self, example: tuple[list[dict[str, str]], list[int]], tolerance: float
                              ) -> dict | None:
        # Exact ids over a prefix: quantised kernels differ across CPUs and may flip a near-tie later on.
        messages, expected = example
        compared = min(self.generation.golden_prefix_tokens, len(expected))
        got = self.greedy_token_ids(messages, compared)
        if got[:compared] == expected[:compared]:
            return None
        return {"messages": messages, "expected_token_ids": expected[:compared], "got_token_ids": got[:compared],
                "expected_text": self.tokenizer.decode(expected[:compared]),
                "got_text": self.tokenizer.decode(got[:compared])}


def _result(text: str, progress: _Progress) -> GenerationResult:
    times = progress.token_times
    first_ms = ((times[0] if times else time.perf_counter()) - progress.started) * 1000
    decoded = len(times) - 1
    seconds = times[-1] - times[0] if times else 0.0
    rate = decoded / seconds if decoded > 0 and seconds > 0 else None
    gaps_ms = [round((later - earlier) * 1000, 4) for earlier, later in zip(times[:-1], times[1:], strict=True)]
    return GenerationResult(text, progress.token_ids, progress.finish_reason, progress.prompt_tokens,
                            round(first_ms, 3), None if rate is None else round(rate, 2), gaps_ms)


def _checked_min_new_tokens(min_new_tokens: int) -> int:
    if not isinstance(min_new_tokens, int) or isinstance(min_new_tokens, bool) or min_new_tokens < 0:
        raise InputError(f"min_new_tokens: {min_new_tokens!r} must be a whole number >= 0")
    return min_new_tokens


def _checked_stop(stop: Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if not all(isinstance(text, str) for text in stop):
        raise InputError(f"stop: {list(stop)[:3]!r} must be a list of strings")
    return [text for text in stop if text]


def _read_json(path) -> dict:
    from edgetune_runtime.json_limits import loads_bounded

    try:
        return loads_bounded(path.read_bytes(), str(path))
    except (OSError, ValueError) as error:
        raise BundleError(f"{path}: cannot read the generation config ({error})") from None
