"""Read a table of records from CSV, TSV, JSONL, a JSON array or Parquet, with errors that name file and line.

CSV, TSV and JSONL go through the runtime's streaming reader (`edgetune_runtime.texts_file`), so a
file that trains a model is read exactly as the device reads it to benchmark the model: the same
decoding, quoting, column names and messages. Parquet and JSON arrays are whole documents, read here.
Delimited files are read as text (no type guessing): labels such as `0`/`1` stay strings, so a label
column cannot silently change type between splits; JSON and Parquet values keep their type for checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas

from edgetune.errors import DataError
from edgetune_runtime.errors import InputError
from edgetune_runtime.texts_file import read_records

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def is_table_path(text: str) -> bool:
    return Path(text).suffix.lower() in TABLE_SUFFIXES


def read_table(path: str | Path) -> pandas.DataFrame:
    """Read `path` into a DataFrame of strings (JSONL/Parquet values keep their type for checks)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv, .jsonl or .parquet")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".jsonl", ".json") and _holds_a_json_array(path):
        return _read_json_array(path)
    try:
        table = read_records(path, "jsonl" if suffix in (".jsonl", ".json") else None)
        records = [record.values for record in table.records]
    except InputError as error:
        raise DataError(str(error)) from None
    if not records:
        raise DataError(f"{path}: has a header but no rows" if table.unit == "row" else f"{path}: has no records")
    # A CSV's columns are its header (even a column every row leaves empty); JSON objects may differ in keys.
    return pandas.DataFrame(records, columns=table.columns if table.unit == "row" else None)


def _holds_a_json_array(path: Path) -> bool:
    """Whether the file's first character (after a byte-order mark and blanks) opens a JSON array."""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            start = chunk.removeprefix(b"\xef\xbb\xbf").lstrip()
            if start:
                return start.startswith(b"[")
    return False


def _read_json_array(path: Path) -> pandas.DataFrame:
    data = path.read_bytes()
    try:
        records = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}, line {line}: bytes {data[error.start:error.end]!r} are not valid UTF-8; "
                        "re-save the file as UTF-8") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}: not valid JSON ({error.msg}); "
                        "write a JSON array of objects, or one JSON object per line") from None
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(f"{path}, record {number}: expected a JSON object, found {type(record).__name__}")
    if not records:
        raise DataError(f"{path}: has no records")
    return pandas.DataFrame(records)


def _read_parquet(path: Path) -> pandas.DataFrame:
    try:
        frame = pandas.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet ({type(error).__name__}: {error})") from None
    if frame.empty:
        raise DataError(f"{path}: has no rows")
    return frame
