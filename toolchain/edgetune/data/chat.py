"""Load chat data (prompt/response columns or `messages` conversations), validate it as it streams, carve validation.

Every example becomes a list of `{role, content}` messages ending with an assistant turn, the shape a chat
template renders. Problems raise `DataError` in one line naming file, row and column and the fix; rows are
checked as they stream through the one table reader (`edgetune.data.read.stream_table`), so a bad row
early fails before the rest of the file is read. Lengths need the model's tokenizer, so they are checked
later by `check_lengths` with the token counts the chat template gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgetune.data.chat_config import ChatDataConfig
from edgetune.data.load import code_points, pick_data_column, visible_form
from edgetune.data.read import stream_table
from edgetune.data.splits import stratified_holdout
from edgetune.errors import DataError
from edgetune_runtime.hashing import sha256_json

# Tried in order when no column is named; pairs are tried together, so `input` never meets `response`.
PROMPT_RESPONSE_CANDIDATES = (("instruction", "response"), ("prompt", "completion"), ("question", "answer"),
                              ("input", "output"))
PROMPT_COLUMN_CANDIDATES = tuple(prompt for prompt, _ in PROMPT_RESPONSE_CANDIDATES)
RESPONSE_COLUMN_CANDIDATES = tuple(response for _, response in PROMPT_RESPONSE_CANDIDATES)
MESSAGES_COLUMN = "messages"
INTENT_COLUMN_CANDIDATES = ("intent", "category")
ROLES = ("system", "user", "assistant")
OnOverflow = Literal["refuse", "truncate", "drop"]


@dataclass(frozen=True)
class ChatExample:
    """One conversation ending with the assistant's answer, and where it came from (for messages)."""

    messages: tuple[dict[str, str], ...]
    source: str
    row: int
    """Data row (from 1, header excluded) in `source`."""
    intent: str | None = None

    @property
    def prompt(self) -> str:
        """Everything the model reads before its final answer, as one text (for duplicate and leakage checks)."""
        return "\n".join(message["content"] for message in self.messages[:-1] if message["role"] != "system")

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class ChatSplit:
    name: str
    source: str
    examples: list[ChatExample]
    prompt_column: str
    """The column a prompt problem is reported in (`messages` for conversations)."""

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class ChatData:
    """Validated train/validation(/test) conversations; test is returned apart and never used for selection."""

    train: ChatSplit
    validation: ChatSplit
    test: ChatSplit | None
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 over every split's conversations: names the exact data a model saw."""
        splits = [split for split in (self.train, self.validation, self.test) if split is not None]
        return sha256_json([[split.name, [list(example.messages) for example in split.examples]] for split in splits])


def load_chat_data(config: ChatDataConfig) -> ChatData:
    """Read and validate every split named by `config`; raise `DataError` on the first problem."""
    notes: list[str] = []
    train = _read_split(config.train, "train", config, notes, earlier=[])
    validation = _read_split(config.validation, "validation", config, notes, [train]) if config.validation else None
    # Test is checked against train and validation for leakage, and is never used to choose anything.
    test = _read_split(config.test, "test", config, notes, [s for s in (train, validation) if s]) if config.test \
        else None
    if test is None and config.test_fraction:
        # Carved first and by prompt like validation: the test split shares no prompt with train or validation.
        train, test = _carve(train, "test", config.test_fraction, config, notes)
    if validation is None:
        train, validation = _carve(train, "validation", config.validation_fraction, config, notes)
    return ChatData(train, validation, test, notes)


def _carve(train: ChatSplit, name: str, fraction: float, config: ChatDataConfig,
           notes: list[str]) -> tuple[ChatSplit, ChatSplit]:
    """Hold out `fraction` of train's prompts (of each intent) as the split `name`; return (rest of train, it)."""
    # The carve draws prompts, not rows: rows sharing a prompt (allow_duplicate_prompts) stay on one side, so
    # validation never scores a prompt the model trained on.
    first_of_prompt: dict[str, int] = {}
    group = [first_of_prompt.setdefault(visible_form(example.prompt), index)
             for index, example in enumerate(train.examples)]
    leaders = sorted(first_of_prompt.values())
    intents = [train.examples[index].intent or "" for index in leaders]
    _, held_leaders = stratified_holdout(intents, fraction, config.split_seed)
    held_groups = {leaders[position] for position in held_leaders}
    held_out = [index for index in range(len(train)) if group[index] in held_groups]
    kept = [index for index in range(len(train)) if group[index] not in held_groups]
    if not kept or not held_out:
        raise DataError(f"{train.source}: too few rows to carve a {name} split ({len(train)} rows); add rows "
                        f"or pass --{name}")
    share = f"{fraction:.0%}" + (" of each intent" if any(intents) else "")
    source = f"{train.source} (carved: {share}, seed {config.split_seed})"
    purpose = "model selection" if name == "validation" else "the final report"
    notes.append(f"no {name} data given: held out {len(held_out)} training rows for {purpose}"
                 + (" (stratified by intent)" if any(intents) else ""))
    carved = ChatSplit(name, source, [train.examples[i] for i in held_out], train.prompt_column)
    return ChatSplit("train", train.source, [train.examples[i] for i in kept], train.prompt_column), carved


def _read_split(path: str, name: str, config: ChatDataConfig, notes: list[str], earlier: list[ChatSplit]) -> ChatSplit:
    table = stream_table(path)
    columns = table.columns
    intent_column = _intent_column(columns, config, path)
    if config.prompt_column is None and config.response_column is None and MESSAGES_COLUMN in columns:
        rows = _conversations(table.rows, path, config, intent_column)
        prompt_column = MESSAGES_COLUMN
    else:
        prompt_column, response_column = _pair_columns(columns, config, path)
        rows = _pairs(table.rows, path, config, prompt_column, response_column, intent_column)
    examples = list(_check_prompts(rows, name, path, prompt_column, config, notes, earlier))
    return ChatSplit(name, path, examples, prompt_column)


def _intent_column(columns: list[str], config: ChatDataConfig, source: str) -> str | None:
    if config.intent_column is not None:
        return pick_data_column(columns, config.intent_column, (), "intent", source)
    lowered = {column.lower(): column for column in columns}
    return next((lowered[candidate] for candidate in INTENT_COLUMN_CANDIDATES if candidate in lowered), None)


def _pair_columns(columns: list[str], config: ChatDataConfig, source: str) -> tuple[str, str]:
    if config.prompt_column is None and config.response_column is None:
        lowered = {column.lower(): column for column in columns}
        for prompt, response in PROMPT_RESPONSE_CANDIDATES:
            if prompt in lowered and response in lowered:
                return lowered[prompt], lowered[response]
        raise DataError(f"{source}: cannot tell which columns hold the prompt and the response; columns are "
                        f"{', '.join(columns)} - set prompt_column and response_column, or write JSONL with a "
                        f"{MESSAGES_COLUMN!r} list per row")
    prompt = pick_data_column(columns, config.prompt_column, PROMPT_COLUMN_CANDIDATES, "prompt", source)
    response = pick_data_column(columns, config.response_column, RESPONSE_COLUMN_CANDIDATES, "response", source)
    return prompt, response


def _text(value: object, where: str, column: str, what: str) -> str:
    """`value` as a non-empty text; empty, whitespace-only or only-invisible text is refused."""
    if not isinstance(value, str):
        missing = value is None or (isinstance(value, float) and value != value)  # NaN: an empty Parquet cell
        found = "nothing" if missing else f"{type(value).__name__} {value!r}"[:60]
        raise DataError(f"{where}, column {column!r}: expected the {what} as text, found {found}; fill it in or "
                        "remove the row")
    if not visible_form(value):
        invisible = f" (only invisible characters: {code_points(value)})" if value.strip() else ""
        raise DataError(f"{where}, column {column!r}: the {what} is empty{invisible}; fill it in or remove the row")
    return value


def _system_turn(config: ChatDataConfig) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": config.system_prompt},) if config.system_prompt else ()


def _intent(values: dict[str, object], intent_column: str | None) -> str | None:
    value = values.get(intent_column) if intent_column else None
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip() or None


def _pairs(rows: Iterator[dict[str, object]], source: str, config: ChatDataConfig, prompt_column: str,
           response_column: str, intent_column: str | None) -> Iterator[ChatExample]:
    for row, values in enumerate(rows, start=1):
        where = f"{source}, row {row}"
        prompt = _text(values.get(prompt_column), where, prompt_column, "prompt")
        response = _text(values.get(response_column), where, response_column, "response")
        messages = (*_system_turn(config), {"role": "user", "content": prompt},
                    {"role": "assistant", "content": response})
        yield ChatExample(messages, source, row, _intent(values, intent_column))


def _conversations(rows: Iterator[dict[str, object]], source: str, config: ChatDataConfig,
                   intent_column: str | None) -> Iterator[ChatExample]:
    for row, values in enumerate(rows, start=1):
        where = f"{source}, row {row}"
        messages = _messages(values.get(MESSAGES_COLUMN), where)
        if messages[0]["role"] != "system":
            messages = [*_system_turn(config), *messages]
        yield ChatExample(tuple(messages), source, row, _intent(values, intent_column))


def _messages(raw: object, where: str) -> list[dict[str, str]]:
    """One row's `messages`: a list of {role, content} with known roles, a user turn, ending with the assistant."""
    column = f"column {MESSAGES_COLUMN!r}"
    if hasattr(raw, "tolist"):  # Parquet list columns arrive as arrays
        raw = raw.tolist()
    if not isinstance(raw, list) or not raw:
        found = "an empty list" if isinstance(raw, list) else f"{type(raw).__name__}"
        raise DataError(f"{where}, {column}: expected a list of {{role, content}} objects, found {found}; write "
                        'e.g. [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
    messages = []
    for number, message in enumerate(raw, start=1):
        place = f"{where}, {column}, message {number}"
        if not isinstance(message, dict) or set(message) - {"role", "content"} - {"name"}:
            raise DataError(f"{place}: expected an object with 'role' and 'content', found {str(message)[:60]}")
        role = message.get("role")
        if role not in ROLES:
            raise DataError(f"{place}: unknown role {role!r}; use one of {', '.join(ROLES)}")
        if role == "system" and number != 1:
            raise DataError(f"{place}: a system turn after the first message; put the system turn first")
        content = message.get("content")
        if not isinstance(content, str) or not visible_form(content):
            what = "missing" if content is None else "not text" if not isinstance(content, str) else "empty"
            raise DataError(f"{place}: the {role} content is {what}; fill it in or remove the turn")
        messages.append({"role": role, "content": content})
    roles = [message["role"] for message in messages]
    if "assistant" not in roles:
        raise DataError(f"{where}, {column}: the conversation has no assistant turn, so there is nothing to learn; "
                        "add the assistant's answer or remove the row")
    if roles[-1] != "assistant":
        raise DataError(f"{where}, {column}: the conversation ends with a {roles[-1]} turn after the last assistant "
                        "answer; end each conversation with the assistant's answer")
    if "user" not in roles[:roles.index("assistant")]:
        raise DataError(f"{where}, {column}: the first assistant turn answers no user turn; put the user's message "
                        "before it")
    return messages


def _check_prompts(examples: Iterator[ChatExample], name: str, source: str, prompt_column: str,
                   config: ChatDataConfig, notes: list[str], earlier: list[ChatSplit]) -> Iterator[ChatExample]:
    """Refuse duplicate prompts within a split and prompts shared with an earlier split (leakage), as rows stream."""
    seen_earlier = {}
    for split in earlier:
        for example in split.examples:
            seen_earlier.setdefault(visible_form(example.prompt), (split, example.row))
    first_row: dict[str, int] = {}
    duplicates = 0
    for example in examples:
        key = visible_form(example.prompt)
        where = f"{source}, row {example.row}, column {prompt_column!r}"
        if key in seen_earlier:
            split, row = seen_earlier[key]
            raise DataError(f"{where}: the prompt is also {split.name} row {row} ({split.source}), so {name} would "
                            f"score on what the model trained on; remove it from one of the two files")
        if key in first_row:
            if name != "train" or not config.allow_duplicate_prompts:
                raise DataError(f"{where}: the same prompt as row {first_row[key]}; remove one of the two, or set "
                                "allow_duplicate_prompts to keep both")
            duplicates += 1
        first_row.setdefault(key, example.row)
        yield example
    if duplicates:
        notes.append(f"{source}: kept {duplicates} rows whose prompt repeats an earlier row's "
                     "(allow_duplicate_prompts)")


@dataclass
class LengthCheck:
    """What `check_lengths` kept, and how many examples were over `max_length`."""

    examples: list[ChatExample]
    token_counts: list[int]
    """Each kept example's tokens after the chat template, capped at max_length when truncated."""
    over: int
    truncated: int
    dropped: int


def check_lengths(examples: Sequence[ChatExample], token_counts: Sequence[int], max_length: int,
                  on_overflow: OnOverflow, prompt_token_counts: Sequence[int] | None = None) -> LengthCheck:
    """Count examples longer than `max_length` tokens (after the chat template) and refuse, truncate or drop them.

    Truncation itself is the tokenizer's (it cuts the tail of the answer); with `prompt_token_counts` an
    example whose prompt alone fills `max_length` is refused even then, since no answer token would be learned.
    """
    if on_overflow not in ("refuse", "truncate", "drop"):
        raise DataError(f"on_overflow: {on_overflow!r} is not one of refuse, truncate, drop")
    if max_length < 1:
        raise DataError(f"max_length: {max_length} must be at least 1")
    if len(token_counts) != len(examples) or (prompt_token_counts is not None
                                              and len(prompt_token_counts) != len(examples)):
        raise ValueError("check_lengths: one token count per example is needed")
    over = [index for index, count in enumerate(token_counts) if count > max_length]
    if over and on_overflow == "refuse":
        first = examples[over[0]]
        raise DataError(f"{first.source}, row {first.row}: {token_counts[over[0]]} tokens after the chat template, "
                        f"over max_length {max_length} ({len(over)} of {len(examples)} examples are); raise "
                        "max_length, or set on_overflow to truncate or drop")
    if on_overflow == "drop":
        dropped = set(over)
        kept = [index for index in range(len(examples)) if index not in dropped]
        return LengthCheck([examples[i] for i in kept], [token_counts[i] for i in kept], len(over), 0, len(over))
    if prompt_token_counts is not None:
        for index in over:
            if prompt_token_counts[index] >= max_length:
                example = examples[index]
                raise DataError(f"{example.source}, row {example.row}: the prompt alone is "
                                f"{prompt_token_counts[index]} tokens, so truncating to max_length {max_length} "
                                "leaves no answer to learn; raise max_length or shorten the prompt")
    return LengthCheck(list(examples), [min(count, max_length) for count in token_counts], len(over), len(over), 0)
