"""The prompts `edgetune-runtime bench` times a chat bundle on: real prompts, at three lengths.

Read from a file (JSONL with `messages` or a prompt column, CSV/TSV with a prompt column, .txt one
prompt per line; an optional reference-answer column, or a final assistant turn, and an optional
intent-label column, for the quality figures) through the runtime's one reader, streamed and stopped
after `limit` rows; without a file, the bundle's golden prompts. Lengths are in tokens of the
rendered conversation, system turn and chat format included, which is what the model reads:
- short: a real prompt as written;
- long: real prompts joined (one per line) into one user turn, cut at a word to fill the context
  beside the new tokens (or a smaller cap);
- medium: the same, cut halfway between the short prompts' median and the long target.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from edgetune_runtime.errors import InputError
from edgetune_runtime.json_limits import loads_bounded
from edgetune_runtime.tasks.generation.bundle import Conversation, GenerationBundle
from edgetune_runtime.tasks.generation.chat_template import check_messages
from edgetune_runtime.texts_file import TEXT_COLUMN_CANDIDATES, pick_column, read_records, read_texts

PROMPT_COLUMN_CANDIDATES = ("prompt", *TEXT_COLUMN_CANDIDATES)
REFERENCE_COLUMN_CANDIDATES = ("response", "reference", "answer", "completion", "output")
INTENT_COLUMN_CANDIDATES = ("intent", "label", "category")
LENGTHS = ("short", "medium", "long")


@dataclass(frozen=True)
class BenchPrompt:
    where: str
    """File and row, for messages."""
    conversation: Conversation
    """A prompt (a user turn) or messages ending with the user's turn."""
    reference: str | None = None
    """The expected answer, when the file has one."""
    intent: str | None = None
    """The prompt's intent label, when the file has one: a judge bundle checks that the answer serves it."""

    @property
    def user_text(self) -> str:
        if isinstance(self.conversation, str):
            return self.conversation
        return next(message["content"] for message in reversed(self.conversation) if message["role"] == "user")


@dataclass(frozen=True)
class TimedPrompt:
    conversation: Conversation
    prompt_ids: list[int]


def read_bench_prompts(path: str | Path, limit: int, prompt_column: str | None = None,
                       reference_column: str | None = None, intent_column: str | None = None) -> list[BenchPrompt]:
    """The first `limit` prompts of `path` (rows with an empty prompt are skipped); `InputError` names a bad row."""
    path = Path(path)
    prompts: list[BenchPrompt] = []
    if path.suffix.lower() == ".txt":
        if reference_column is not None or intent_column is not None:
            raise InputError(f"{path}: a .txt file holds prompts only; reference answers and intent labels need a "
                             ".csv, .tsv or .jsonl")
        for row in read_texts(path):
            if row.text.strip():
                prompts.append(BenchPrompt(f"{path}, line {row.row}", row.text))
            if len(prompts) == limit:
                break
        return prompts
    table = read_records(path)
    has_messages = "messages" in table.columns
    prompt_key = reference_key = None
    if table.columns and (prompt_column is not None or not has_messages):
        prompt_key = pick_column(table.columns, prompt_column, PROMPT_COLUMN_CANDIDATES, "prompt", table.columns_from)
    if reference_column is not None:
        reference_key = pick_column(table.columns, reference_column, (), "reference", table.columns_from)
    elif not has_messages:
        lowered = {column.lower(): column for column in table.columns}
        reference_key = next((lowered[name] for name in REFERENCE_COLUMN_CANDIDATES if name in lowered), None)
    if intent_column is not None:
        intent_key = pick_column(table.columns, intent_column, (), "intent", table.columns_from)
    else:
        lowered = {column.lower(): column for column in table.columns}
        intent_key = next((lowered[name] for name in INTENT_COLUMN_CANDIDATES if name in lowered), None)
    for record in table.records:
        where = f"{path}, {table.unit} {record.number}"
        prompt = _record_prompt(record.values, where, prompt_key, reference_key, intent_key)
        if prompt is not None:
            prompts.append(prompt)
        if len(prompts) == limit:
            break
    return prompts


def _record_prompt(values: dict, where: str, prompt_key: str | None, reference_key: str | None,
                   intent_key: str | None = None) -> BenchPrompt | None:
    reference = values.get(reference_key) if reference_key else None
    if reference is not None and not isinstance(reference, str):
        raise InputError(f"{where}, column {reference_key!r}: expected the reference answer as text")
    intent = values.get(intent_key) if intent_key else None
    if intent is not None and not isinstance(intent, str):
        raise InputError(f"{where}, column {intent_key!r}: expected the intent label as text")
    intent = intent.strip() or None if intent is not None else None
    if prompt_key is None or (prompt_key not in values and "messages" in values):
        messages = values.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant":
            reference = messages[-1].get("content")
            messages = messages[:-1]
        conversation = check_messages(messages, f"{where}: messages")
        return BenchPrompt(where, conversation, reference or None, intent)
    text = values.get(prompt_key)
    if not isinstance(text, str):
        found = "nothing" if text is None else type(text).__name__
        raise InputError(f"{where}, column {prompt_key!r}: expected the prompt as text, found {found}")
    return BenchPrompt(where, text, reference or None, intent) if text.strip() else None


def golden_bench_prompts(bundle: GenerationBundle) -> list[BenchPrompt]:
    """The conversations of the bundle's golden examples (a bundle without any has no prompts)."""
    name = bundle.manifest.get("golden")
    if not name:
        return []
    path = bundle.directory / name
    try:
        examples = loads_bounded(path.read_bytes(), str(path))
        return [BenchPrompt(f"{path}, example {index + 1}", check_messages(example["messages"], "golden messages"))
                for index, example in enumerate(examples)]
    except (ValueError, KeyError, TypeError, InputError) as error:
        raise InputError(f"{path}: the golden examples are malformed ({error}); pass --data FILE instead") from None


def prompts_by_length(bundle: GenerationBundle, prompts: list[BenchPrompt], count: int, new_tokens: int,
                      long_tokens: int | None = None) -> dict[str, list[TimedPrompt]]:
    """`count` prompts of each length in `LENGTHS`, each made from different real prompts (they repeat when
    there are fewer than `count`), each leaving room for `new_tokens` in the context."""
    if not prompts:
        raise InputError("no prompts to benchmark on: pass --data FILE with prompts (the bundle ships no golden ones)")
    short = []
    for index in range(count):
        conversation = prompts[index % len(prompts)].conversation
        short.append(TimedPrompt(conversation, bundle.prompt_ids(conversation, new_tokens, truncate=True)))
    room = bundle.context_length - new_tokens
    long_target = min(room, long_tokens) if long_tokens is not None else room
    longest_short = max(len(prompt.prompt_ids) for prompt in short)
    medium_target = (int(statistics.median(len(prompt.prompt_ids) for prompt in short)) + long_target) // 2
    if medium_target <= longest_short or long_target <= medium_target + 1:
        raise InputError(f"the context of {bundle.context_length} tokens leaves {room} for a prompt beside "
                         f"--new-tokens {new_tokens}{f' (capped at {long_tokens})' if long_tokens else ''}, while "
                         f"real prompts already take up to {longest_short}: no longer prompts fit; lower "
                         "--new-tokens or raise --long-prompt-tokens")
    texts = [prompt.user_text for prompt in prompts if prompt.user_text.strip()]
    return {"short": short,
            "medium": [_filled(bundle, texts, index, medium_target) for index in range(count)],
            "long": [_filled(bundle, texts, index, long_target) for index in range(count)]}


def _token_count(bundle: GenerationBundle, text: str) -> int:
    try:
        return len(bundle.prompt_ids(text, max_new_tokens=1))
    except InputError:  # longer than the context: longer than any target
        return bundle.context_length


def _filled(bundle: GenerationBundle, texts: list[str], start: int, target: int) -> TimedPrompt:
    """Real prompts from `texts[start]` on, one per line in one user turn, cut at a word to at most `target`
    tokens."""
    joined, index = "", start
    while _token_count(bundle, joined) <= target:
        joined = f"{joined}\n{texts[index % len(texts)]}" if joined else texts[index % len(texts)]
        index += 1
    # The longest cut at a space that fits: token counts grow with the text, so a binary search finds it.
    cuts = [match.start() for match in re.finditer(r"\s+", joined)]
    low, high = 0, len(cuts) - 1
    best = joined[:cuts[0]] if cuts else joined
    while low <= high:
        middle = (low + high) // 2
        if _token_count(bundle, joined[:cuts[middle]]) <= target:
            best, low = joined[:cuts[middle]], middle + 1
        else:
            high = middle - 1
    return TimedPrompt(best, bundle.prompt_ids(best, max_new_tokens=bundle.context_length - target, truncate=True))
