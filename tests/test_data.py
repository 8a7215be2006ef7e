"""Data loading and validation.

Every user mistake gets one precise error; good data loads the same from every format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas
import pytest

from conftest import banking77_subset, write_csv
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.data.read import read_table
from edgetune.data.report import build_data_report, format_data_report
from edgetune.data.splits import stratified_holdout
from edgetune.errors import ConfigError, DataError

ROWS = [{"text": f"message number {i}", "category": ("card" if i % 2 else "cash")} for i in range(40)]


def _load(train: Path, **kwargs) -> object:
    return load_labelled_data(DataConfig(train=str(train), **{k: (str(v) if isinstance(v, Path) else v)
                                                              for k, v in kwargs.items()}))


def test_same_rows_from_csv_tsv_jsonl_and_parquet(tmp_path):
    frame = pandas.DataFrame(ROWS)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    loaded = [_load(tmp_path / f"d.{suffix}") for suffix in ("csv", "tsv", "jsonl", "parquet")]
    first = loaded[0]
    assert len(first.train) + len(first.validation) == 40
    assert first.label_names == ["card", "cash"]
    for other in loaded[1:]:
        assert other.train.texts == first.train.texts
        assert other.validation.labels == first.validation.labels


def test_integer_labels_sort_numerically_and_stay_strings(tmp_path):
    rows = [{"sentence": f"s {i}", "label": i % 12} for i in range(120)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    data = _load(path)
    assert data.label_names[:3] == ["0", "1", "2"] and data.label_names[-1] == "11"


def test_validation_is_stratified_and_reproducible(tmp_path):
    path = write_csv(tmp_path / "train.csv", banking77_subset("train", 5, 40))
    first, second = _load(path), _load(path)
    assert first.validation.texts == second.validation.texts
    assert sorted(set(first.validation.labels)) == first.label_names
    assert all(first.validation.labels.count(label) == 4 for label in first.label_names)
    assert not set(first.validation.texts) & set(first.train.texts)


def test_stratified_holdout_keeps_singleton_classes_in_train():
    kept, held = stratified_holdout(["a"] * 10 + ["b"], 0.2, seed=1)
    assert 10 not in held and len(held) == 2 and sorted(kept + held) == list(range(11))


def test_text_column_auto_detected_per_file_like_sst2(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\tsentence\n" + "".join(f"{i % 2}\tgood film {i}\n" for i in range(20)))
    dev = tmp_path / "dev.tsv"
    dev.write_text("label\tcontent\n1\tgreat\n0\tawful\n")
    data = _load(train, test=dev)
    assert data.test.texts == ["great", "awful"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"text,category\n", "has a header but no rows"),
        (b"text,category\nhello,card\n\xff\xfebad,cash\n", "line 3: bytes"),
        (b"text,category\nhello,card\nbad\x00,cash\n", "line 3: contains a NUL byte"),
        (b"words,category\nhello,card\n", "cannot tell which column holds the text; columns are words, category"),
        (b"text\tcategory\nhello\tcard\n", "tab-separated"),
        (b"text,category\nhello,card\n   ,cash\n", "row 2, column 'text': the text is empty"),
        (b"text,category\nhello,card\nhi,\n", "row 2, column 'category': the label is empty"),
        (b"text,category\nhello,card\nhi,card\n", "a classifier needs at least two classes"),
    ],
    ids=["empty", "header-only", "undecodable", "nul-byte", "missing-column", "wrong-delimiter",
         "blank-text", "blank-label", "one-class"],
)
def test_bad_training_file_gives_precise_error(tmp_path, content, expected):
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as raised:
        _load(path)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unseen_test_label_names_file_and_row(tmp_path):
    train = write_csv(tmp_path / "train.csv", ROWS)
    test = write_csv(tmp_path / "test.csv", [{"text": "a", "category": "card"}, {"text": "b", "category": "loan"}])
    with pytest.raises(DataError, match=r"test\.csv, row 2: label 'loan' never appears in the training data"):
        _load(train, test=test)


def test_unseen_validation_label_is_refused(tmp_path):
    train = write_csv(tmp_path / "train.csv", ROWS)
    validation = write_csv(tmp_path / "val.csv", [{"text": "a", "category": "mortgage"}])
    with pytest.raises(DataError, match="val.csv, row 1: label 'mortgage'"):
        _load(train, validation=validation)


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_table(path)


def test_non_string_text_in_jsonl_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": 5, "label": "y"}\n')
    with pytest.raises(DataError, match="row 2, column 'text': expected text, got int"):
        _load(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type .xlsx"):
        read_table(tmp_path / "data.xlsx")


def test_explicit_column_that_does_not_exist(tmp_path):
    path = write_csv(tmp_path / "train.csv", ROWS)
    with pytest.raises(DataError, match="no column 'utterance' for the text; columns are text, category"):
        _load(path, text_column="utterance")


def test_config_rejects_bad_validation_fraction():
    with pytest.raises(ConfigError, match="validation_fraction"):
        DataConfig(train="x.csv", validation_fraction=0.9)


def test_report_counts_duplicates_conflicts_and_leakage(tmp_path):
    rows = ROWS + [{"text": "Message  number 1", "category": "card"}, {"text": "message number 2", "category": "card"}]
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", [{"text": "message number 3", "category": "card"},
                                             {"text": "brand new", "category": "cash"}])
    data = load_labelled_data(DataConfig(train=str(train), test=str(test), validation_fraction=0.1, split_seed=3))
    report = build_data_report(data)
    duplicates = report["train_duplicates"]
    # Both extra rows repeat an earlier text unless the carve-out moved the original to validation.
    assert 1 <= duplicates["repeated_rows"] <= 2
    assert report["overlap_with_train"]["test"]["rows_also_in_train"] in (0, 1)
    assert report["splits"]["test"]["rows"] == 2
    assert report["splits"]["train"]["classes"] == 2
    text = format_data_report(report)
    assert "leakage" in text and "imbalance" in text


def test_real_banking77_report_finds_its_known_leakage():
    from conftest import BANKING77

    data = load_labelled_data(DataConfig(train=str(BANKING77 / "train.csv"), test=str(BANKING77 / "test.csv")))
    report = build_data_report(data)
    assert len(data.label_names) == 77
    assert report["splits"]["train"]["rows"] + report["splits"]["validation"]["rows"] == 10003
    assert report["splits"]["test"]["rows"] == 3080
    assert report["overlap_with_train"]["test"]["rows_also_in_train"] > 0
