"""One text-file reader: the toolchain trains on a CSV/TSV/JSONL file exactly as the runtime reads it on a device.

Both go through `edgetune_runtime.texts_file`; these tests feed the same real files to the toolchain's
loader and to the runtime's `read_texts` and compare texts, labels and error lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import banking77_subset
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.data.read import read_table
from edgetune.errors import DataError
from edgetune_runtime.errors import InputError
from edgetune_runtime.texts_file import read_texts

# Quoting, a delimiter and a line end inside a text, a byte-order mark, CRLF line ends, blank lines.
AWKWARD_TEXTS = ['my card, the new one, "does not work"', "two\nlines", "  padded  ", "naïve café ✓"]


def _rows() -> list[dict]:
    real = banking77_subset("test", 2, 6)
    return [{"text": text, "category": real[0]["category"]} for text in AWKWARD_TEXTS] + real


def _quoted(value: str, delimiter: str) -> str:
    if any(character in value for character in (delimiter, '"', "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n\n".join(json.dumps(row, ensure_ascii=False) for row in _rows()) + "\n", encoding="utf-8")
        return path
    delimiter = "\t" if suffix == ".tsv" else ","
    lines = [delimiter.join(("text", "category"))]
    lines += [delimiter.join(_quoted(row[key], delimiter) for key in ("text", "category")) for row in _rows()]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines[:3]) + "\r\n\r\n" + "\r\n".join(lines[3:]) + "\r\n")
                     .encode("utf-8"))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_the_toolchain_and_the_runtime_read_the_same_rows(tmp_path, suffix):
    path = _write(tmp_path, suffix)
    frame = read_table(path)
    runtime_rows = list(read_texts(path, need_labels=True))
    assert [row.text for row in runtime_rows] == frame["text"].tolist() == [row["text"] for row in _rows()]
    assert [row.label for row in runtime_rows] == frame["category"].tolist()
    data = load_labelled_data(DataConfig(train=str(path), test=str(path)))
    assert data.test.texts == [row.text for row in runtime_rows]


@pytest.mark.parametrize(("content", "fragment"), [
    ("text;category\nhello;card\n", "cannot tell which column holds the text; columns are text;category "
                                    "(the header looks semicolon-separated: save it as comma-separated .csv)"),
    ('text,category\nfine,card\n"open,card\nnext,cash\n', "line 3, row 2: cannot parse as CSV: a quote opened "
                                                          "in this row is still open at line 4"),
    ("text,category\nfine,card\nbad\x00byte,cash\n", "line 3: contains a NUL byte"),
    ("text,category\na,b,c\n", "line 2, row 1: cannot parse as CSV: 3 fields where the header has 2"),
    ("\n  \n", "the file is empty"),
], ids=["other-delimiter", "unclosed-quote", "nul-byte", "extra-field", "blank-lines-only"])
def test_a_bad_file_gets_the_same_line_from_both(tmp_path, content, fragment):
    path = tmp_path / "texts.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as on_device:
        list(read_texts(path, need_labels=True))
    with pytest.raises(DataError) as in_toolchain:
        load_labelled_data(DataConfig(train=str(path)))
    assert str(on_device.value) == str(in_toolchain.value)
    assert str(on_device.value).startswith(str(path)) and fragment in str(on_device.value)


def test_a_text_longer_than_the_csv_modules_limit_reaches_the_length_check(tmp_path):
    """Python's csv stops at 128 KiB fields; the reader lifts that so the toolchain can name the row."""
    path = tmp_path / "train.csv"
    path.write_text("text,category\n" + "x" * 200_000 + ",card\n", encoding="utf-8")
    assert len(next(read_texts(path)).text) == 200_000
    with pytest.raises(DataError, match=r"row 1, column 'text': the text is 200,000 characters long"):
        load_labelled_data(DataConfig(train=str(path)))


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_json_array_of_records_still_loads(tmp_path, suffix):
    rows = _rows()
    path = tmp_path / f"train{suffix}"
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert read_table(path)["text"].tolist() == [row["text"] for row in rows]


def test_a_json_file_of_one_object_per_line_loads_too(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("\n".join(json.dumps(row) for row in _rows()), encoding="utf-8")
    assert read_table(path)["text"].tolist() == [row["text"] for row in _rows()]
