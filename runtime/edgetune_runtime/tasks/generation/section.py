"""The manifest's `generation` section: what a text-generation bundle needs besides the graph.

```json
"generation": {
  "genai_config": "genai_config.json",     // the builder's decoder config (a listed, hashed file)
  "chat_template": "{% for message ... %}", // the original Jinja template, kept for reference and tools
  "chat_format": {                          // what the runtime renders with (chat_template.py), checked at
    "preamble_with_system": "",             //   bundle time to give the template's token ids
    "preamble_without_system": "<|im_start|>system\\n...<|im_end|>\\n",
    "roles": {"system": {"prefix": "<|im_start|>system\\n", "suffix": "<|im_end|>\\n"}, "user": ..., "assistant": ...},
    "generation_prompt": "<|im_start|>assistant\\n",
    "system_after_first": true
  },
  "system_prompt": "You are ...",           // put first when a conversation has no system turn; null: the template's
  "max_new_tokens": 256,                    // default answer length
  "context_length": 512,                    // prompt + answer tokens; at most genai_config's context_length
  "stop_token_ids": [2],                    // generation ends after one of these (<|im_end|>)
  "stop_strings": [],                       // ... or when the text contains one of these (cut before it)
  "sampling": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0},  // defaults; 0: greedy
  "golden_prefix_tokens": 8                 // verify compares this many greedy tokens of each golden prompt
}
```
Every number is bounded here so that a re-sealed manifest cannot make the runtime allocate or loop
without limit; the section's problems are `BundleError`s naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.tasks.generation.chat_template import ChatFormat
from edgetune_runtime.tasks.generation.sampling import Sampling

SECTION = "generation"
MAX_CONTEXT_LENGTH = 1 << 20
"""The decoder layout's own bound (decoder.py)."""
MAX_STOP_TOKENS = 64
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARACTERS = 256
MAX_SYSTEM_PROMPT_CHARACTERS = 1 << 16
MAX_CHAT_TEMPLATE_CHARACTERS = 1 << 20
MAX_GOLDEN_PREFIX_TOKENS = 4096


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerationSection:
    genai_config: str
    chat_template: str | None
    chat_format: ChatFormat
    system_prompt: str | None
    max_new_tokens: int
    context_length: int
    stop_token_ids: tuple[int, ...]
    stop_strings: tuple[str, ...]
    sampling: Sampling
    golden_prefix_tokens: int

    @classmethod
    def parse(cls, section: dict, where: str) -> GenerationSection:
        def fail(key: str, problem: str) -> BundleError:
            return BundleError(f"{where}: {SECTION}.{key} {problem}")

        for key in ("genai_config", "chat_format", "max_new_tokens", "context_length", "stop_token_ids"):
            if key not in section:
                raise BundleError(f"{where}: the manifest lacks {SECTION} key {key!r}")
        genai_config, context_length = section["genai_config"], section["context_length"]
        if not isinstance(genai_config, str):
            raise fail("genai_config", "should name the decoder config file")
        if not _is_int(context_length) or not 1 <= context_length <= MAX_CONTEXT_LENGTH:
            raise fail("context_length", f"is {context_length!r}; it must be a whole number from 1 to "
                                         f"{MAX_CONTEXT_LENGTH}")
        max_new_tokens = section["max_new_tokens"]
        if not _is_int(max_new_tokens) or not 1 <= max_new_tokens <= context_length:
            raise fail("max_new_tokens", f"is {max_new_tokens!r}; it must be a whole number from 1 to the "
                                         f"context length {context_length}")
        stop_ids = section["stop_token_ids"]
        if not isinstance(stop_ids, list) or len(stop_ids) > MAX_STOP_TOKENS \
                or not all(_is_int(token) and token >= 0 for token in stop_ids):
            raise fail("stop_token_ids", f"should be a list of at most {MAX_STOP_TOKENS} token ids "
                                         "(whole numbers >= 0)")
        stop_strings = section.get("stop_strings", [])
        if not isinstance(stop_strings, list) or len(stop_strings) > MAX_STOP_STRINGS or not all(
                isinstance(text, str) and 0 < len(text) <= MAX_STOP_STRING_CHARACTERS for text in stop_strings):
            raise fail("stop_strings", f"should be a list of at most {MAX_STOP_STRINGS} non-empty strings of at most "
                                       f"{MAX_STOP_STRING_CHARACTERS} characters")
        system_prompt = section.get("system_prompt")
        if system_prompt is not None and (not isinstance(system_prompt, str)
                                          or len(system_prompt) > MAX_SYSTEM_PROMPT_CHARACTERS):
            raise fail("system_prompt", f"should be null or a string of at most {MAX_SYSTEM_PROMPT_CHARACTERS} "
                                        "characters")
        chat_template = section.get("chat_template")
        if chat_template is not None and (not isinstance(chat_template, str)
                                          or len(chat_template) > MAX_CHAT_TEMPLATE_CHARACTERS):
            raise fail("chat_template", "should be the Jinja template's text")
        golden_prefix_tokens = section.get("golden_prefix_tokens", 8)
        if not _is_int(golden_prefix_tokens) or not 1 <= golden_prefix_tokens <= MAX_GOLDEN_PREFIX_TOKENS:
            raise fail("golden_prefix_tokens", f"is {golden_prefix_tokens!r}; it must be a whole number from 1 to "
                                               f"{MAX_GOLDEN_PREFIX_TOKENS}")
        sampling_values = section.get("sampling", {})
        if not isinstance(sampling_values, dict) or set(sampling_values) - {"temperature", "top_p", "top_k",
                                                                            "repetition_penalty"}:
            raise fail("sampling", "should hold only temperature, top_p, top_k and repetition_penalty")
        try:
            sampling = Sampling(**sampling_values).check(f"{where}: {SECTION}.sampling")
        except InputError as error:
            raise BundleError(str(error)) from None
        return cls(genai_config, chat_template, ChatFormat.from_dict(section["chat_format"], where), system_prompt,
                   max_new_tokens, context_length, tuple(stop_ids), tuple(stop_strings), sampling,
                   golden_prefix_tokens)
