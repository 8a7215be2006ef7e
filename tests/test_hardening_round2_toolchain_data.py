"""Hardening round 2, the toolchain's data loader.

* Texts made only of zero-width or other format/control characters are empty: refused naming file, row, column
  (main trained them as [CLS][SEP]).
* Parquet labels holding lists or bytes are refused in one line naming the type (main made "['x']", "b'x'").
* Rows are checked as they stream: a bad row early fails before the rest of the file is read (main read the
  whole file first, so a later unreadable line hid the first problem and a huge file sat in memory).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import DataError

GOOD_ROWS = [("I lost my card", "card"), ("my transfer is late", "transfer")] * 6


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200b \u200d",
                                       "\x07", "\u2061\u206f"])
def test_a_text_of_only_invisible_characters_is_empty(tmp_path, invisible):
    path = _csv(tmp_path / "train.csv", [*GOOD_ROWS[:2], (invisible, "card"), *GOOD_ROWS[2:]])
    with pytest.raises(DataError) as raised:
        load_labelled_data(DataConfig(train=str(path)))
    message = str(raised.value)
    assert f"{path}, row 3, column 'text': the text is empty (only invisible characters: U+" in message, message
    assert "\n" not in message


def test_visible_text_with_a_zero_width_character_is_kept(tmp_path):
    path = _csv(tmp_path / "train.csv", [("zero\u200bwidth joiner inside", "card"), *GOOD_ROWS])
    assert "zero\u200bwidth joiner inside" in load_labelled_data(DataConfig(train=str(path))).train.texts + \
        load_labelled_data(DataConfig(train=str(path))).validation.texts


def _parquet(path: Path, labels: list) -> Path:
    texts = [text for text, _ in GOOD_ROWS][: len(labels)]
    pyarrow.parquet.write_table(pyarrow.table({"text": texts, "label": labels}), path)
    return path


@pytest.mark.parametrize("labels, kind", [
    ([["card"], ["transfer"]] * 6, "list"),
    ([b"card", b"transfer"] * 6, "bytes"),
])
def test_parquet_labels_holding_lists_or_bytes_are_refused(tmp_path, labels, kind):
    path = _parquet(tmp_path / "train.parquet", labels)
    with pytest.raises(DataError) as raised:
        load_labelled_data(DataConfig(train=str(path)))
    message = str(raised.value)
    assert message.startswith(f"{path}, row 1, column 'label': the label is ") and "\n" not in message, message
    if kind == "list":
        assert "not a single value (found list ['card']); store one class name" in message, message
    else:
        assert "the label is bytes (b'card'), not one text or number; store one class name" in message, message


def test_parquet_number_labels_are_fine(tmp_path):
    data = load_labelled_data(DataConfig(train=str(_parquet(tmp_path / "train.parquet", [0, 1] * 6))))
    assert data.label_names == ["0", "1"]


def test_a_bad_row_early_fails_before_the_rest_of_the_file_is_read(tmp_path):
    path = _csv(tmp_path / "train.csv", [GOOD_ROWS[0], ("  ", "card")])
    # After the bad row: 64 MB on one line with NUL bytes (sparse, so cheap to make). A loader that reads the
    # whole file before checking holds that line in memory and reports the NUL byte, not row 2.
    with open(path, "r+b") as handle:
        handle.seek(0, 2)
        handle.truncate(handle.tell() + 64 * 1024 * 1024)
    with pytest.raises(DataError) as raised:
        load_labelled_data(DataConfig(train=str(path)))
    assert f"{path}, row 2, column 'text': the text is empty" in str(raised.value), str(raised.value)


def test_an_over_long_text_fails_at_its_row(tmp_path):
    path = _csv(tmp_path / "train.csv", [GOOD_ROWS[0], ("x" * 200_000, "card"), *GOOD_ROWS])
    with pytest.raises(DataError, match=r"row 2, column 'text': the text is 200,000 characters long"):
        load_labelled_data(DataConfig(train=str(path)))


def test_parquet_is_checked_batch_by_batch(tmp_path):
    from edgetune.data.read import PARQUET_BATCH_ROWS, stream_table

    rows = PARQUET_BATCH_ROWS * 3
    path = tmp_path / "train.parquet"
    pyarrow.parquet.write_table(pyarrow.table({"text": ["t"] * rows, "label": ["a", "b"] * (rows // 2)}), path)
    table = stream_table(path)
    assert table.columns == ["text", "label"]
    assert next(table.rows) == {"text": "t", "label": "a"}  # one batch decoded, not the whole file


def test_a_json_array_nested_thousands_deep_is_one_line(tmp_path):
    # One document, so it cannot stream: its nesting is measured before json.loads recurses into it
    # (main: RecursionError traceback).
    path = tmp_path / "train.json"
    path.write_text('[{"text": "I lost my card", "label": ' + "[" * 5000 + "]" * 5000 + "}]")
    with pytest.raises(DataError, match="train.json: JSON nested 5002 levels deep"):
        load_labelled_data(DataConfig(train=str(path)))


def test_a_json_array_over_the_size_cap_is_refused_before_reading(tmp_path, monkeypatch):
    import edgetune.data.read

    path = tmp_path / "train.json"
    path.write_text("[" + ",".join('{"text": "I lost my card", "label": "card"}' for _ in range(2000)) + "]")
    monkeypatch.setattr(edgetune.data.read, "MAX_JSON_ARRAY_BYTES", 64 * 1024)  # the cap itself is 256 MiB
    with pytest.raises(DataError, match=r"train.json: a JSON array of 0 MiB is over .*write one JSON object per line"):
        load_labelled_data(DataConfig(train=str(path)))
