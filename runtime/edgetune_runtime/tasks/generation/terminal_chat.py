"""An interactive chat in a terminal: answers stream as they are decoded, the conversation is kept.

Commands: `/reset` forgets the conversation (the system prompt stays), `/system TEXT` sets the
system prompt and starts over, `/quit` (or end of input, or Ctrl-C at the prompt) leaves. Ctrl-C
while an answer streams stops that answer and keeps what was said. A conversation longer than the
context keeps its system turn and its latest tokens (`truncate=True`), so a long chat goes on.
"""

from __future__ import annotations

from typing import TextIO

from edgetune_runtime.errors import InputError
from edgetune_runtime.tasks.generation.bundle import GenerationBundle

PROMPT = "you> "
HELP = "Type a message; /reset starts over, /system TEXT sets the system prompt, /quit leaves."


def run_chat(bundle: GenerationBundle, reader: TextIO, writer: TextIO, system: str | None = None,
             **generation) -> int:
    """Chat over `reader`/`writer` until /quit or end of input; returns the number of answers given.

    `generation` holds `GenerationBundle.stream`'s keyword arguments (max_new_tokens, temperature, ...).
    """
    system = system if system is not None else bundle.generation.system_prompt
    messages: list[dict[str, str]] = []
    answers = 0
    writer.write(HELP + "\n")
    while True:
        writer.write(PROMPT)
        writer.flush()
        try:
            line = reader.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt leaves, as in a shell
            line = ""
        if not line:  # end of input
            writer.write("\n")
            return answers
        text = line.rstrip("\r\n")
        command, _, argument = text.strip().partition(" ")
        if command == "/quit":
            return answers
        if command == "/reset":
            messages = []
            writer.write("(conversation reset)\n")
            continue
        if command == "/system":
            system, messages = argument.strip() or None, []
            writer.write(f"(system prompt {'set' if system else 'back to the bundle default'}; conversation reset)\n")
            continue
        if not text.strip():
            continue
        turn = [*([{"role": "system", "content": system}] if system else []), *messages,
                {"role": "user", "content": text}]
        pieces: list[str] = []
        try:
            answer = bundle.stream(turn, truncate=True, **generation)
            try:
                for piece in answer:
                    pieces.append(piece)
                    writer.write(piece)
                    writer.flush()
            except KeyboardInterrupt:
                answer.close()
                writer.write(" [stopped]")
        except InputError as error:
            writer.write(f"error: {error}\n")
            continue
        writer.write("\n")
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(pieces)}]
        answers += 1
