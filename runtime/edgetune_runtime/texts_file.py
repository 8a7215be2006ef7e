"""Read texts (and optionally labels) from CSV, TSV, JSONL or plain-text files, one row at a time.

Rows stream from disk, so a file of any size is read in constant memory. Every problem raises
`InputError` naming the file, the row (data rows from 1, header excluded; lines for JSONL and
plain text) and how to fix it. The one reader of these formats: the toolchain's data loader reads
its CSV/TSV/JSONL through `read_records` and picks columns with `pick_column`.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgetune_runtime.errors import InputError
from edgetune_runtime.json_limits import JSONTooDeep, loads_bounded

# Tried in order when no column is named; the toolchain's data loader uses these same lists
# (Banking77: text/category, SST-2: sentence or content/label, Bitext: instruction/intent).
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "utterance", "query", "instruction", "review", "document")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "category", "intent", "class", "target")
SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")
RecordFormat = Literal["csv", "tsv", "jsonl"]

# The csv module refuses fields over 128 KiB; a text that long is still read, so that the caller can say
# which row holds it (usually rows merged by an unclosed quote) instead of a bare "field larger than limit".
_FIELD_LIMIT_CHARACTERS = 1 << 24
MAX_LINE_BYTES = 1 << 24
"""16 MiB: a longer line is refused with its number before it is held in memory (a text is cut to far less)."""
_READ_BLOCK_BYTES = 1 << 20
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Record:
    number: int
    """Data row number (from 1, header excluded) for CSV/TSV; line number for JSONL."""
    values: dict[str, object]
    """CSV/TSV: the row's fields (strings) by header name; JSONL: the line's object as parsed."""


@dataclass
class RecordTable:
    """A CSV/TSV/JSONL file opened for streaming: its columns, and its records one at a time."""

    path: Path
    columns: list[str]
    """The CSV/TSV header; a JSONL file's first object's keys (empty for a file with no objects)."""
    records: Iterator[Record]
    unit: Literal["row", "line"]
    """What `Record.number` counts, for messages."""
    columns_from: str
    """Where the columns were read, for messages: the path, or the path and line of the first object."""


@dataclass(frozen=True)
class TextRow:
    row: int
    """Data row number (from 1, header excluded) for CSV/TSV; line number for JSONL and .txt."""
    text: str
    label: str | None


def read_texts(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
               need_labels: bool = False) -> Iterator[TextRow]:
    """Yield the rows of `path`; with `need_labels`, every row must carry a non-empty label."""
    path = Path(path)
    if path.suffix.lower() == ".txt" and path.is_file():
        if need_labels:
            raise InputError(f"{path}: a .txt file holds texts only; labels need a .csv, .tsv or .jsonl file")
        return _read_lines(path)
    return _read_text_records(read_records(path), text_column, label_column, need_labels)


def read_records(path: str | Path, record_format: RecordFormat | None = None) -> RecordTable:
    """Open a CSV, TSV or JSONL file (format from its suffix unless given): the header (or first object) is
    read now, the records as they are iterated."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if record_format is None and suffix not in SUFFIXES:
        raise InputError(f"{path}: cannot read {suffix or 'files without a suffix'}; "
                         f"use {', '.join(SUFFIXES)} (one text per line for .txt)")
    record_format = record_format or {".tsv": "tsv", ".jsonl": "jsonl"}.get(suffix, "csv")
    if record_format == "jsonl":
        records = _jsonl_records(path)
        first = next(records, None)
        if first is None:
            return RecordTable(path, [], iter(()), "line", str(path))
        return RecordTable(path, list(first.values), itertools.chain([first], records), "line",
                           f"{path}, line {first.number}")
    return _open_delimited(path, "\t" if record_format == "tsv" else ",")


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, each with its ending: `\\n`, `\\r\\n` or a lone `\\r` (old Mac files, and what
    some exporters still write), read in blocks so that no line longer than `MAX_LINE_BYTES` is ever held."""
    pending = b""
    number = 0
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK_BYTES):
            pending += block
            start = 0
            for match in _LINE_END.finditer(pending):
                if match.end() == len(pending) and match.group() == b"\r":
                    break  # a \r at the block's end may be the first half of \r\n: wait for the next block
                number += 1
                if match.start() - start > MAX_LINE_BYTES:
                    _refuse_long_line(path, number)
                yield pending[start:match.end()]
                start = match.end()
            pending = pending[start:]
            if len(pending) > MAX_LINE_BYTES:
                _refuse_long_line(path, number + 1)
    if pending:
        yield pending


def _refuse_long_line(path: Path, number: int) -> None:
    raise InputError(f"{path}, line {number}: longer than {MAX_LINE_BYTES >> 20} MiB; split the text, or check "
                     "that the file is line-based text (a quote left open joins lines into one field)")


def _lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded one at a time so that a decoding error names its line."""
    for number, raw in enumerate(_raw_lines(path), start=1):
        if b"\x00" in raw:  # csv and json would read on and report nonsense further down
            raise InputError(f"{path}, line {number}: contains a NUL byte; the file is binary or UTF-16 - "
                             "re-save it as UTF-8 text")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = raw[error.start:error.end]
            raise InputError(f"{path}, line {number}: bytes {bad!r} are not valid UTF-8; "
                             "re-save the file as UTF-8") from None
        # Spreadsheets often start with a byte-order mark that would otherwise rename the first column.
        yield line.removeprefix("\ufeff") if number == 1 else line


def _read_lines(path: Path) -> Iterator[TextRow]:
    for number, line in enumerate(_lines(path), start=1):
        yield TextRow(number, line.rstrip("\r\n"), None)


def _jsonl_records(path: Path) -> Iterator[Record]:
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = loads_bounded(line, f"{path}, line {number}")
        except JSONTooDeep as error:  # json.loads would recurse into a RecursionError traceback
            raise InputError(f"{error}; write one flat JSON object per line") from None
        except ValueError as error:
            # The message without its position: that counts from the start of this one line.
            raise InputError(f"{path}, line {number}: not valid JSON ({getattr(error, 'msg', error)}); "
                             "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {number}: expected a JSON object, found {type(record).__name__}")
        yield Record(number, record)


def _open_delimited(path: Path, delimiter: str) -> RecordTable:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT_CHARACTERS))
    reader = csv.reader(_lines(path), delimiter=delimiter)
    kind = "TSV" if delimiter == "\t" else "CSV"
    while True:  # blank lines before the header are skipped; a file of nothing but them is empty
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: the file is empty; it needs a header row and at least one text") from None
        except csv.Error as error:
            raise InputError(f"{path}, line {reader.line_num}: cannot parse as {kind}: {error}; "
                             "check the quoting of that line") from None
        if any(field.strip() for field in header):
            return RecordTable(path, header, _delimited_records(path, reader, header, kind), "row", str(path))


def _delimited_records(path: Path, reader, header: list[str], kind: str) -> Iterator[Record]:
    number = 0
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise InputError(f"{path}, line {reader.line_num}: cannot parse as {kind}: {error}; "
                             "check the quoting of that row") from None
        if not fields:
            continue  # a blank line between rows
        number += 1
        if len(fields) != len(header):
            where = f"{path}, line {first_line}, row {number}: cannot parse as {kind}:"
            if reader.line_num > first_line:  # a quoted field ran over line ends: its quote is not closed
                raise InputError(f"{where} a quote opened in this row is still open at line {reader.line_num}, "
                                 f"so the row has {len(fields)} of the header's {len(header)} fields; "
                                 "check the quoting: close the quote")
            raise InputError(f"{where} {len(fields)} fields where the header has {len(header)}; "
                             "quote texts that contain the delimiter")
        yield Record(number, dict(zip(header, fields, strict=True)))


def _read_text_records(table: RecordTable, text_column: str | None, label_column: str | None,
                       need_labels: bool) -> Iterator[TextRow]:
    if not table.columns:  # a JSONL file with no objects: no texts
        return
    text_key = pick_column(table.columns, text_column, TEXT_COLUMN_CANDIDATES, "text", table.columns_from)
    label_key = None
    if label_column is not None or need_labels:
        label_key = pick_column(table.columns, label_column, LABEL_COLUMN_CANDIDATES, "label", table.columns_from)
    for record in table.records:
        yield _row(table.path, table.unit, record.number, record.values.get(text_key), text_key,
                   record.values.get(label_key) if label_key else None, label_key, need_labels)


def _row(path: Path, unit: str, number: int, text: object, text_key: str, label: object, label_key: str | None,
         need_labels: bool) -> TextRow:
    where = f"{path}, {unit} {number}"
    if not isinstance(text, str):
        found = "nothing" if text is None else type(text).__name__
        raise InputError(f"{where}, column {text_key!r}: expected a text, found {found}")
    if label is not None and not isinstance(label, str):
        label = str(label) if isinstance(label, int | float) and not isinstance(label, bool) else label
    if need_labels and (not isinstance(label, str) or not label.strip()):
        raise InputError(f"{where}, column {label_key!r}: the label is missing or empty; fill it in or remove the row")
    return TextRow(number, text, label)


def pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], role: str, where: str) -> str:
    """The column named `wanted`, else the first of `candidates` present (any case); `role` is text or label."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InputError(f"{where}: no column {wanted!r} for the {role}; columns are {', '.join(columns)}"
                         f"{_delimiter_hint(columns)} - pass --{role}-column with one of them")
    lowered = {column.lower(): column for column in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise InputError(f"{where}: cannot tell which column holds the {role}; columns are {', '.join(columns)}"
                     f"{_delimiter_hint(columns)} - pass --{role}-column")


def _delimiter_hint(columns: list[str]) -> str:
    """A header read as one column that holds another delimiter: say which, and how to fix the file."""
    if len(columns) == 1:
        for separator, name in (("\t", "tab"), (";", "semicolon"), ("|", "pipe"), (",", "comma")):
            if separator in columns[0]:
                return (f" (the header looks {name}-separated: "
                        f"{'rename the file to .tsv' if separator == chr(9) else 'save it as comma-separated .csv'})")
    return ""
