"""Read a table of records from CSV, TSV, JSONL or Parquet, with errors that name file and line.

Everything is read as text (no type guessing): labels such as `0`/`1` stay strings, so a label
column cannot silently change type between splits.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas

from edgetune.errors import DataError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".json": None, ".parquet": None}


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
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path, text)
    return _read_delimited(path, text, TABLE_SUFFIXES[suffix])


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path) -> str:
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}, line {_line_of(data, nul)}: contains a NUL byte; the file is binary or UTF-16 - "
            "re-save it as UTF-8 text"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}, line {_line_of(data, error.start)}: bytes {data[error.start:error.end]!r} are not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None


def _read_delimited(path: Path, text: str, separator: str) -> pandas.DataFrame:
    try:
        frame = pandas.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False,
                                na_filter=False, skip_blank_lines=True)
    except pandas.errors.ParserError as error:
        raise DataError(f"{path}: cannot parse as {'TSV' if separator == chr(9) else 'CSV'}: {error}".strip()) from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no rows")
    return frame


def _read_jsonl(path: Path, text: str) -> pandas.DataFrame:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records is accepted too
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {error.lineno}: invalid JSON: {error.msg}") from None
        numbered = list(enumerate(records, start=1))
    else:
        numbered = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((line_number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {line_number}: invalid JSON: {error.msg}") from None
    for line_number, record in numbered:
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {line_number}: expected a JSON object per line, got {type(record).__name__}")
    if not numbered:
        raise DataError(f"{path}: has no records")
    return pandas.DataFrame([record for _, record in numbered])


def _read_parquet(path: Path) -> pandas.DataFrame:
    try:
        frame = pandas.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet ({type(error).__name__}: {error})") from None
    if frame.empty:
        raise DataError(f"{path}: has no rows")
    return frame
