"""Render a conversation the way the model's chat template does, without Jinja.

The bundle keeps the original Jinja template for reference, but a device should not need jinja2
or transformers to run it. So the toolchain reduces the template to a `ChatFormat`: the text
before the first turn (one when the conversation opens with a system turn, one when it does not,
which is where a template's default system turn goes), a prefix and suffix per role, and the
generation prompt. It checks at bundle time, by rendering sample conversations both ways and
comparing token ids, that this spec reproduces the template, and refuses to bundle one it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgetune_runtime.errors import BundleError, InputError

ROLES = ("system", "user", "assistant")
MAX_SPEC_TEXT_CHARACTERS = 4096
"""A role's prefix or a default system turn is tens of characters; anything longer is not a chat format."""


@dataclass(frozen=True)
class ChatFormat:
    """What a chat template writes around each turn; `render` puts a conversation together from it."""

    preamble_with_system: str
    """Text before the first turn when the conversation opens with a system turn (e.g. a BOS token)."""
    preamble_without_system: str
    """Text before the first turn otherwise: where a template writes its default system turn."""
    prefixes: dict[str, str]
    """Role -> text written before the turn's content."""
    suffixes: dict[str, str]
    """Role -> text written after the turn's content."""
    generation_prompt: str
    """What opens the assistant's answer (`add_generation_prompt=True`)."""
    system_after_first: bool = True
    """Whether a system turn may appear after the first message (some templates refuse it)."""

    def to_dict(self) -> dict:
        return {"preamble_with_system": self.preamble_with_system,
                "preamble_without_system": self.preamble_without_system,
                "roles": {role: {"prefix": self.prefixes[role], "suffix": self.suffixes[role]} for role in ROLES},
                "generation_prompt": self.generation_prompt, "system_after_first": self.system_after_first}

    @classmethod
    def from_dict(cls, spec: object, where: str) -> ChatFormat:
        """Parse the manifest's `generation.chat_format`; raise `BundleError` naming the bad key."""
        if not isinstance(spec, dict):
            raise BundleError(f"{where}: generation.chat_format should be a JSON object, not {type(spec).__name__}")
        roles = spec.get("roles")
        if not isinstance(roles, dict) or any(not isinstance(roles.get(role), dict) for role in ROLES):
            raise BundleError(f"{where}: generation.chat_format.roles should hold a prefix and suffix for each of "
                              f"{', '.join(ROLES)}")
        texts = {"preamble_with_system": spec.get("preamble_with_system"),
                 "preamble_without_system": spec.get("preamble_without_system"),
                 "generation_prompt": spec.get("generation_prompt")}
        for role in ROLES:
            texts[f"roles.{role}.prefix"] = roles[role].get("prefix")
            texts[f"roles.{role}.suffix"] = roles[role].get("suffix")
        for key, value in texts.items():
            if not isinstance(value, str) or len(value) > MAX_SPEC_TEXT_CHARACTERS:
                raise BundleError(f"{where}: generation.chat_format.{key} should be a string of at most "
                                  f"{MAX_SPEC_TEXT_CHARACTERS} characters")
        system_after_first = spec.get("system_after_first", True)
        if not isinstance(system_after_first, bool):
            raise BundleError(f"{where}: generation.chat_format.system_after_first should be true or false")
        return cls(texts["preamble_with_system"], texts["preamble_without_system"],
                   {role: texts[f"roles.{role}.prefix"] for role in ROLES},
                   {role: texts[f"roles.{role}.suffix"] for role in ROLES},
                   texts["generation_prompt"], system_after_first)

    def render(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation as the template would write it (messages already checked by `check_messages`)."""
        opens_with_system = bool(messages) and messages[0]["role"] == "system"
        parts = [self.preamble_with_system if opens_with_system else self.preamble_without_system]
        for message in messages:
            parts += [self.prefixes[message["role"]], message["content"], self.suffixes[message["role"]]]
        if add_generation_prompt:
            parts.append(self.generation_prompt)
        return "".join(parts)

    def system_turn(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The text of the opening system turn (the default one when there is none): what truncation keeps."""
        if messages and messages[0]["role"] == "system":
            return self.render(messages[:1], add_generation_prompt=False)
        return self.preamble_without_system


def check_messages(messages: object, where: str = "messages", system_after_first: bool = True
                   ) -> list[dict[str, str]]:
    """A conversation as `[{"role", "content"}, ...]` with known roles, ending with a user turn; else `InputError`."""
    if not isinstance(messages, list | tuple) or not messages:
        raise InputError(f"{where}: expected a non-empty list of {{\"role\", \"content\"}} messages")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str) \
                or message.get("role") not in ROLES:
            raise InputError(f"{where}[{index}]: each message needs a role ({', '.join(ROLES)}) and a string "
                             f"content, found {str(message)[:60]!r}")
        if message["role"] == "system" and index > 0 and not system_after_first:
            raise InputError(f"{where}[{index}]: this model's chat template takes a system turn only first; "
                             "move it to the start")
        checked.append({"role": message["role"], "content": message["content"]})
    if checked[-1]["role"] == "assistant":
        raise InputError(f"{where}: the conversation ends with an assistant turn; end it with the user's turn "
                         "the model should answer")
    return checked
