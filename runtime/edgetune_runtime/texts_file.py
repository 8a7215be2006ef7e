"""Read texts (and optionally labels) from CSV, TSV, JSONL or plain-text files, one row at a time.

Rows stream from disk, so a file of any size is read in constant memory. Every problem raises
`InputError` naming the file, the row (data rows from 1, header excluded; lines for JSONL and
plain text) and how to fix it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgetune_runtime.errors import InputError

# Tried in order when no column is named; the toolchain's data loader uses these same lists
# (Banking77: text/category, SST-2: sentence or content/label, Bitext: instruction/intent).
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "utterance", "query", "instruction", "review", "document")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "category", "intent", "class", "target")
SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")


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
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: cannot read {suffix or 'files without a suffix'}; "
                         f"use {', '.join(SUFFIXES)} (one text per line for .txt)")
    if suffix == ".txt":
        if need_labels:
            raise InputError(f"{path}: a .txt file holds texts only; labels need a .csv, .tsv or .jsonl file")
        return _read_lines(path)
    if suffix == ".jsonl":
        return _read_jsonl(path, text_column, label_column, need_labels)
    return _read_delimited(path, "\t" if suffix == ".tsv" else ",", text_column, label_column, need_labels)


def _lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded one at a time so that a decoding error names its line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
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


def _read_jsonl(path: Path, text_column: str | None, label_column: str | None,
                need_labels: bool) -> Iterator[TextRow]:
    text_key, label_key = text_column, label_column
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InputError(f"{path}, line {number}: not valid JSON ({error.args[0]}); "
                             "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {number}: expected a JSON object, found {type(record).__name__}")
        if text_key is None:
            text_key = _pick(list(record), None, TEXT_COLUMN_CANDIDATES, "text", f"{path}, line {number}")
            if label_key is None and need_labels:
                label_key = _pick(list(record), None, LABEL_COLUMN_CANDIDATES, "label", f"{path}, line {number}")
        yield _row(path, "line", number, record.get(text_key), text_key,
                   record.get(label_key) if label_key else None, label_key, need_labels)


def _read_delimited(path: Path, delimiter: str, text_column: str | None, label_column: str | None,
                    need_labels: bool) -> Iterator[TextRow]:
    reader = csv.reader(_lines(path), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: the file is empty; it needs a header row and at least one text") from None
    text_index = header.index(_pick(header, text_column, TEXT_COLUMN_CANDIDATES, "text", str(path)))
    label_index = None
    if label_column is not None or need_labels:
        label_index = header.index(_pick(header, label_column, LABEL_COLUMN_CANDIDATES, "label", str(path)))
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise InputError(f"{path}, line {reader.line_num}: {error}; check the quoting of that row") from None
        if not fields:
            continue  # a blank line between rows
        number += 1
        if len(fields) != len(header):
            raise InputError(f"{path}, row {number}: {len(fields)} fields where the header has {len(header)}; "
                             "quote texts that contain the delimiter")
        label = fields[label_index] if label_index is not None else None
        yield _row(path, "row", number, fields[text_index], header[text_index], label,
                   header[label_index] if label_index is not None else None, need_labels)


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


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], role: str, where: str) -> str:
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InputError(f"{where}: no column {wanted!r} for the {role}; columns are {', '.join(columns)} "
                         f"- pass --{role}-column with one of them")
    lowered = {column.lower(): column for column in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise InputError(f"{where}: cannot tell which column holds the {role}; columns are {', '.join(columns)} "
                     f"- pass --{role}-column")
