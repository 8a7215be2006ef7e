"""Reduce a Jinja chat template to the runtime's `ChatFormat`, and prove the reduction right.

The runtime renders conversations without Jinja (edgetune_runtime/tasks/generation/chat_template.py).
Here the template is rendered by transformers' `apply_chat_template` on conversations whose contents
are marker words, and the text around each marker gives the preambles, the role prefixes and
suffixes and the generation prompt. Then real and made-up conversations (one to three exchanges,
with and without a system turn) are rendered both ways and tokenised: a template whose token ids the
spec does not reproduce (one that trims content, numbers turns, or treats the last turn apart) is
refused in one line, so a bundle never formats prompts differently from the model's training.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgetune.errors import EdgetuneError
from edgetune_runtime.tasks.generation.chat_template import ChatFormat

_MARK = {"system": "EDGETUNEMARKSYSTEM", "user": "EDGETUNEMARKUSER", "assistant": "EDGETUNEMARKASSISTANT",
         "system2": "EDGETUNEMARKSECONDSYSTEM"}

# Conversations the derived spec must reproduce besides the held-out ones: every role order a chat uses.
_SAMPLE_CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "Where is my order?"},),
    ({"role": "system", "content": "You are a support agent."}, {"role": "user", "content": "Hi there"}),
    ({"role": "user", "content": "I want a refund"}, {"role": "assistant", "content": "Sure, which order?"},
     {"role": "user", "content": "Order 42, placed yesterday."}),
    ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Cancel it"},
     {"role": "assistant", "content": "Done.\nAnything else?"}, {"role": "user", "content": "  No, thanks!  "}),
)


class ChatFormatError(EdgetuneError):
    """The chat template does something the runtime's rendering spec cannot reproduce."""


def derive_chat_format(tokenizer, where: str) -> ChatFormat:
    """The `ChatFormat` of `tokenizer.chat_template` (a transformers tokenizer); `ChatFormatError` if it has none
    or renders conversations the spec cannot describe."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatFormatError(f"{where}: the tokenizer has no chat template; add `chat_template` to "
                              "tokenizer_config.json (or chat_template.jinja) before exporting")

    def render(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        except Exception as error:  # a template's own raise_exception() or a Jinja error
            raise _Unsupported(str(error).splitlines()[0] if str(error) else type(error).__name__) from None

    def turn(role: str, mark: str | None = None) -> dict[str, str]:
        return {"role": role, "content": mark or _MARK[role]}

    def split_after(text: str, before: str, mark: str, what: str) -> tuple[str, str]:
        if not text.startswith(before) or text.count(mark) != 1:
            raise _Unsupported(f"the {what} turn is not written after the previous turns with its content as given")
        return tuple(text[len(before):].split(mark))  # (prefix, suffix)

    try:
        system_only = render([turn("system")])
        head, system_suffix = system_only.split(_MARK["system"]) if system_only.count(_MARK["system"]) == 1 \
            else _fail("the system turn's content is not written as given")
        with_user = render([turn("system"), turn("user")])
        user_prefix, user_suffix = split_after(with_user, system_only, _MARK["user"], "user")
        with_answer = render([turn("system"), turn("user"), turn("assistant")])
        assistant_prefix, assistant_suffix = split_after(with_answer, with_user, _MARK["assistant"], "assistant")
        prompted = render([turn("system"), turn("user")], add_generation_prompt=True)
        if not prompted.startswith(with_user):
            raise _Unsupported("the generation prompt is not written after the conversation")
        generation_prompt = prompted[len(with_user):]
        try:  # a later system turn gives the system prefix apart from what opens every conversation
            later_system = render([turn("system"), turn("user"), turn("system", _MARK["system2"])])
            system_prefix, later_suffix = split_after(later_system, with_user, _MARK["system2"], "later system")
            system_after_first = later_suffix == system_suffix and head.endswith(system_prefix)
        except _Unsupported:
            system_after_first = False
        if not system_after_first:
            system_prefix = head
        preamble_with_system = head[:len(head) - len(system_prefix)]
        user_only = render([turn("user")])
        user_turn = user_prefix + _MARK["user"] + user_suffix
        if not user_only.endswith(user_turn):
            raise _Unsupported("a conversation without a system turn does not end with the user turn as written "
                               "after a system turn")
        preamble_without_system = user_only[:len(user_only) - len(user_turn)]
    except _Unsupported as error:
        raise ChatFormatError(f"{where}: the chat template cannot be rendered without Jinja ({error}); the runtime "
                              "supports templates that write a fixed prefix and suffix around each turn") from None
    return ChatFormat(preamble_with_system, preamble_without_system,
                      {"system": system_prefix, "user": user_prefix, "assistant": assistant_prefix},
                      {"system": system_suffix, "user": user_suffix, "assistant": assistant_suffix},
                      generation_prompt, system_after_first)


def check_chat_format(chat_format: ChatFormat, tokenizer, conversations: Sequence[Sequence[dict[str, str]]],
                      where: str) -> int:
    """Render `conversations` and the built-in samples with the spec and with the template; refuse any
    difference in token ids. Returns how many conversations were compared."""
    checked = 0
    for conversation in [*_SAMPLE_CONVERSATIONS, *conversations]:
        messages = [dict(message) for message in conversation]
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]  # the prompt the model answers: up to the last user turn
        if not messages or (not chat_format.system_after_first
                            and any(message["role"] == "system" for message in messages[1:])):
            continue
        for add_generation_prompt in (True, False):
            expected = list(tokenizer.apply_chat_template(messages, tokenize=True,
                                                          add_generation_prompt=add_generation_prompt))
            got = tokenizer(chat_format.render(messages, add_generation_prompt), add_special_tokens=False)["input_ids"]
            if got != expected:
                first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                             min(len(got), len(expected)))
                raise ChatFormatError(
                    f"{where}: rendering the chat template without Jinja gives other token ids than "
                    f"apply_chat_template for {messages[0]['content'][:40]!r}... (first difference at token {first}); "
                    "this template cannot be bundled for the runtime")
        checked += 1
    return checked


class _Unsupported(Exception):
    pass


def _fail(reason: str):
    raise _Unsupported(reason)
