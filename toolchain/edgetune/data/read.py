"""Read a table of records from CSV, TSV, JSONL, a JSON array or Parquet, with errors that name file and line.

CSV, TSV and JSONL go through the runtime's streaming reader (`edgetune_runtime.texts_file`), so a
file that trains a model is read exactly as the device reads it to benchmark the model: the same
decoding, quoting, column names and messages. Parquet is streamed in batches here; a JSON array is one
document, parsed whole. Rows are checked as they stream, so a bad row fails before the rest is read.
Delimited files are read as text (no type guessing): labels such as `0`/`1` stay strings, so a label
column cannot silently change type between splits; JSON and Parquet values keep their type for checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas

from edgetune.errors import DataError
from edgetune_runtime.errors import InputError
from edgetune_runtime.texts_file import read_records

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
PARQUET_BATCH_ROWS = 4096


def is_table_path(text: str) -> bool:
    return Path(text).suffix.lower() in TABLE_SUFFIXES


@dataclass
class StreamedTable:
    """A data file opened for checking as it streams: its columns now, its rows one at a time."""

    path: Path
    columns: list[str]
    rows: Iterator[dict[str, object]]
    """Each row's values by column; problems in the file raise `DataError` when the reader reaches them."""


def stream_table(path: str | Path) -> StreamedTable:
    """Open `path` for streaming: CSV/TSV/JSONL row by row, Parquet batch by batch, a JSON array (one
    document) parsed whole. A file that ends without a row raises `DataError` when the rows run out."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv, .jsonl or .parquet")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".parquet":
        return _stream_parquet(path)
    if suffix in (".jsonl", ".json") and _holds_a_json_array(path):
        frame = _read_json_array(path)
        return StreamedTable(path, [str(column) for column in frame.columns], iter(frame.to_dict("records")))
    try:
        table = read_records(path, "jsonl" if suffix in (".jsonl", ".json") else None)
    except InputError as error:
        raise DataError(str(error)) from None
    empty = f"{path}: has a header but no rows" if table.unit == "row" else f"{path}: has no records"
    if not table.columns:  # a JSONL file without one object
        raise DataError(empty)
    return StreamedTable(path, table.columns, _records_or_error(table.records, empty))


def read_table(path: str | Path) -> pandas.DataFrame:
    """Read `path` into a DataFrame of strings (JSONL/Parquet values keep their type for checks)."""
    table = stream_table(path)
    records = list(table.rows)
    # A CSV's columns are its header (even a column every row leaves empty); JSON objects may differ in keys.
    return pandas.DataFrame(records, columns=table.columns if path_is_delimited(table.path) else None)


def path_is_delimited(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def _records_or_error(records: Iterator, empty_message: str) -> Iterator[dict[str, object]]:
    """The records' values, with the shared reader's `InputError` as the toolchain's `DataError`."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record.values
    except InputError as error:
        raise DataError(str(error)) from None
    if not count:
        raise DataError(empty_message)


def _stream_parquet(path: Path) -> StreamedTable:
    import pyarrow.parquet

    try:
        parquet = pyarrow.parquet.ParquetFile(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet ({type(error).__name__}: {error})") from None
    if parquet.metadata.num_rows == 0:
        raise DataError(f"{path}: has no rows")
    return StreamedTable(path, list(parquet.schema_arrow.names), _parquet_rows(path, parquet))


def _parquet_rows(path: Path, parquet) -> Iterator[dict[str, object]]:
    # Batches of rows, not the whole file: a bad row early fails before the rest is decoded. Values keep
    # their Parquet type (lists stay lists, binary stays bytes) so that the checks can refuse them.
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet ({type(error).__name__}: {error})") from None


def _holds_a_json_array(path: Path) -> bool:
    """Whether the file's first character (after a byte-order mark and blanks) opens a JSON array."""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            start = chunk.removeprefix(b"\xef\xbb\xbf").lstrip()
            if start:
                return start.startswith(b"[")
    return False


# A JSON array is one document: it cannot be checked row by row as it streams, so its size is capped
# (Banking77's training split is 1.2 MB as JSON); larger data belongs in JSONL, which streams.
MAX_JSON_ARRAY_BYTES = 256 * 2**20


def _read_json_array(path: Path) -> pandas.DataFrame:
    from edgetune_runtime.json_limits import JSONTooDeep, loads_bounded

    size = path.stat().st_size
    if size > MAX_JSON_ARRAY_BYTES:
        raise DataError(f"{path}: a JSON array of {size / 2**20:.0f} MiB is over the {MAX_JSON_ARRAY_BYTES >> 20} MiB "
                        "that edgetune reads as one document; write one JSON object per line (.jsonl), which streams")
    data = path.read_bytes()
    try:
        records = loads_bounded(data.decode("utf-8-sig"), str(path))
    except JSONTooDeep as error:
        raise DataError(f"{error}; a data record is a flat JSON object of text and label") from None
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
