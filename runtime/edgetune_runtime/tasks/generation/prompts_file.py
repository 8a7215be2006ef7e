"""Answer every prompt of a JSONL (or .txt) file into JSON lines, streaming in constant memory.

Each JSONL line is `{"prompt": "..."}` or `{"messages": [{"role", "content"}, ...]}` (other keys are
ignored); a .txt file holds one prompt per line. Rows are read, answered and written one at a time;
with an output path the lines go to a temporary file beside it, renamed into place only when every
row is done.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edgetune_runtime.atomic_write import write_answers_file
from edgetune_runtime.errors import InputError
from edgetune_runtime.tasks.generation.bundle import GenerationBundle
from edgetune_runtime.tasks.generation.chat_template import check_messages
from edgetune_runtime.texts_file import read_records, read_texts


@dataclass
class GenerateFileResult:
    rows: int
    output: Path | None


def read_prompts(path: str | Path) -> Iterator[tuple[int, str | list[dict[str, str]]]]:
    """(line number, prompt text or messages) of each row; a malformed row is an `InputError` naming its line."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        for row in read_texts(path):
            yield row.row, row.text
        return
    if path.suffix.lower() != ".jsonl":
        raise InputError(f"{path}: prompts are read from .jsonl ({{\"prompt\": ...}} or {{\"messages\": [...]}} per "
                         "line) or .txt (one prompt per line)")
    for record in read_records(path).records:
        where = f"{path}, line {record.number}"
        if "messages" in record.values:
            yield record.number, check_messages(record.values["messages"], f"{where}: messages")
        elif isinstance(record.values.get("prompt"), str):
            yield record.number, record.values["prompt"]
        else:
            raise InputError(f"{where}: expected a string \"prompt\" or a \"messages\" list; found keys "
                             f"{', '.join(record.values) or 'none'}")


def generate_file(bundle: GenerationBundle, input_path: str | Path, output_path: str | Path | None = None, *,
                  stream: TextIO | None = None, **generation) -> GenerateFileResult:
    """Write one JSON line per prompt: its line, the answer, why it ended and its token counts.

    `generation` holds `GenerationBundle.generate`'s keyword arguments (max_new_tokens, temperature, seed, ...).
    Without `output_path` the lines go to `stream` (default stdout) as they are answered.
    """
    rows = read_prompts(input_path)
    if output_path is None:
        return GenerateFileResult(_write(bundle, input_path, rows, stream or sys.stdout, generation), None)
    output_path = Path(output_path)
    count = write_answers_file(input_path, output_path,
                               lambda handle: _write(bundle, input_path, rows, handle, generation))
    return GenerateFileResult(count, output_path)


def _write(bundle: GenerationBundle, input_path: str | Path, rows: Iterator[tuple[int, object]], handle: TextIO,
           generation: dict) -> int:
    count = 0
    for line, prompt in rows:
        try:
            result = bundle.generate(prompt, **generation)
        except InputError as error:
            raise InputError(f"{input_path}, line {line}: {error}") from None
        handle.write(json.dumps({"line": line, "text": result.text, "finish_reason": result.finish_reason,
                                 "prompt_tokens": result.prompt_tokens, "new_tokens": len(result.token_ids)},
                                ensure_ascii=False) + "\n")
        handle.flush()  # a reader of the stream sees each answer as soon as it is done
        count += 1
    return count
