"""Hardening, bad data: every kind of broken dataset a user brings gets one clear line and exit status 2.

Each case goes through the real command line twice (`edgetune data inspect` and `edgetune finetune`,
which must stop before loading any weights), and the line must name the file and, where there is
one, the row or line and the column. A few cases also run as real processes, so that "no traceback"
is checked on the stderr a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_csv
from edgetune.cli.main import cli
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import EdgetuneError

GOOD_ROWS = [{"text": f"message number {i}", "category": ("card" if i % 2 else "cash")} for i in range(40)]
ONE_MEGABYTE = 1_000_000


def _csv(content: str | bytes) -> tuple[str, str | bytes]:
    return "train.csv", content


def _good_csv_lines() -> str:
    return "".join(f"{row['text']},{row['category']}\n" for row in GOOD_ROWS)


def _jsonl(records: list[dict]) -> tuple[str, str]:
    return "train.jsonl", "".join(json.dumps(record) + "\n" for record in records)


# id -> (training file name, its content, extra files {name: content} passed as --test, fragments the
# error line must hold). "{train}" and "{test}" stand for the file paths.
BAD_TRAINING_DATA = {
    "empty-file": (*_csv(b""), None, ["{train}: the file is empty"]),
    "whitespace-only": (*_csv(b"  \n\n \n"), None, ["{train}: the file is empty"]),
    "header-only": (*_csv("text,category\n"), None, ["{train}: has a header but no rows"]),
    "missing-label-column": (*_csv("text\nhello\nhi there\n"), None,
                             ["{train}: cannot tell which column holds the label; columns are text"]),
    "missing-text-column": (*_csv("words,category\nhello,card\n"), None,
                            ["{train}: cannot tell which column holds the text; columns are words, category"]),
    "semicolon-delimiter": (*_csv("text;category\nhello;card\nhi;cash\n"), None,
                            ["{train}: cannot tell which column", "semicolon-separated"]),
    "tab-delimiter-in-csv": (*_csv("text\tcategory\nhello\tcard\nhi\tcash\n"), None,
                             ["{train}: cannot tell which column", "rename the file to .tsv"]),
    "undecodable-latin1": (*_csv("text,category\nhello,card\ncaf\u00e9,cash\n".encode("latin-1")), None,
                           ["{train}, line 3: bytes b'\\xe9", "not valid UTF-8", "re-save the file as UTF-8"]),
    "utf16-file-nul-bytes": (*_csv("text,category\nhello,card\n".encode("utf-16")), None,
                             ["{train}, line 1: contains a NUL byte", "UTF-16"]),
    "nul-byte-in-row": (*_csv(b"text,category\nhello,card\nbad\x00text,cash\n"), None,
                        ["{train}, line 3: contains a NUL byte"]),
    "one-megabyte-text": (*_csv("text,category\n" + "x" * ONE_MEGABYTE + ",card\n" + _good_csv_lines()), None,
                          ["{train}, row 1, column 'text': the text is 1,000,000 characters long",
                           "unclosed quote"]),
    "unclosed-quote": (*_csv('text,category\n"hello,card\nhi,cash\n'), None,
                       ["{train}, line 2, row 1: cannot parse as CSV", "a quote opened in this row is still open"]),
    "extra-field-in-row": (*_csv("text,category\nhello,card\nhi,cash,extra\n"), None,
                           ["{train}, line 3, row 2: cannot parse as CSV", "3 fields where the header has 2"]),
    "blank-text": (*_csv("text,category\nhello,card\n   ,cash\n"), None,
                   ["{train}, row 2, column 'text': the text is empty"]),
    "blank-label": (*_csv("text,category\nhello,card\nhi,\n"), None,
                    ["{train}, row 2, column 'category': the label is empty"]),
    "one-class-only": (*_csv("text,category\n" + "".join(f"m {i},card\n" for i in range(20))), None,
                       ["{train}: every training row has the label 'card'", "at least two classes"]),
    "too-few-rows-to-carve-validation": (*_csv("text,category\nhello,card\nhi,cash\n"), None,
                                         ["{train}: too few rows to carve a validation split (2 rows)",
                                          "pass --validation"]),
    "test-label-unseen-in-training": (*_csv("text,category\n" + _good_csv_lines()),
                                      {"test.csv": "text,category\nfine,card\nnew,loan\n"},
                                      ["{test}, row 2: label 'loan' never appears in the training data",
                                       "add training examples"]),
    "numbers-in-train-names-in-test": (*_csv("text,label\n" + "".join(f"m {i},{i % 2}\n" for i in range(20))),
                                       {"test.csv": "text,label\ngreat,positive\n"},
                                       ["{test}, row 1: label 'positive' never appears",
                                        "training labels are numbers and this one is not"]),
    "names-in-train-numbers-in-test": (*_csv("text,category\n" + _good_csv_lines()),
                                       {"test.csv": "text,category\nfine,1\n"},
                                       ["{test}, row 1: label '1' never appears",
                                        "training labels are names and this one is not"]),
    "mixed-label-types-in-jsonl": (*_jsonl([{"text": f"m {i}", "label": i % 2} for i in range(10)]
                                           + [{"text": "odd one", "label": "positive"}]), None,
                                   ["{train}, row 11, column 'label': label 'positive' is text",
                                    "row 1's label 0 is a number", "one kind of label"]),
    "list-label-in-jsonl": (*_jsonl([{"text": "a", "label": "x"}, {"text": "b", "label": ["x", "y"]}]), None,
                            ["{train}, row 2, column 'label': the label is missing or not a single value"]),
    "number-as-text-in-jsonl": (*_jsonl([{"text": "a", "label": "x"}, {"text": 42, "label": "y"}]), None,
                                ["{train}, row 2, column 'text': expected text, got int"]),
    "invalid-jsonl-line": ("train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n', None,
                           ["{train}, line 2: not valid JSON", "one JSON object per line"]),
    "jsonl-line-not-an-object": ("train.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n', None,
                                 ["{train}, line 2: expected a JSON object, found list"]),
    "corrupt-parquet": ("train.parquet", b"PAR1 this is not really parquet", None,
                        ["{train}: cannot read as Parquet"]),
    "unsupported-suffix": ("train.xlsx", b"PK\x03\x04", None,
                           ["{train}: unsupported file type .xlsx", "use .csv, .tsv, .jsonl or .parquet"]),
}


def _write_case(tmp_path: Path, name: str, content: str | bytes, extra: dict | None) -> dict[str, Path]:
    paths = {"train": tmp_path / name}
    _write(paths["train"], content)
    for extra_name, extra_content in (extra or {}).items():
        paths["test"] = tmp_path / extra_name
        _write(paths["test"], extra_content)
    return paths


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _data_arguments(paths: dict[str, Path]) -> list[str]:
    arguments = ["--train", str(paths["train"])]
    if "test" in paths:
        arguments += ["--test", str(paths["test"])]
    return arguments


def assert_one_line_user_error(exit_code: int, stderr: str, fragments: list[str]) -> str:
    """Exit status 2, exactly one non-blank stderr line starting `error: `, holding every fragment."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("case", list(BAD_TRAINING_DATA))
def test_bad_data_is_one_line_naming_file_row_and_column(tmp_path, case):
    name, content, extra, fragments = BAD_TRAINING_DATA[case]
    paths = _write_case(tmp_path, name, content, extra)
    expected = [fragment.format(**{key: str(path) for key, path in paths.items()}) for fragment in fragments]
    runner = CliRunner()
    no_model = tmp_path / "no-model"  # were the data accepted by mistake, training still could not start
    for arguments in (["data", "inspect", *_data_arguments(paths)],
                      ["finetune", *_data_arguments(paths), "--model", str(no_model), "-o", str(tmp_path / "out")]):
        result = runner.invoke(cli, arguments)
        assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught exception
        assert_one_line_user_error(result.exit_code, result.stderr, expected)
        assert result.stdout == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.work").exists()


def test_good_data_still_loads_after_the_checks(tmp_path):
    """The checks above must not refuse ordinary data: long texts under the limit, integer labels, Parquet."""
    rows = [{"text": ("long " * 19_000) if i == 0 else f"message {i}", "label": i % 3} for i in range(60)]
    pandas.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    write_csv(tmp_path / "test.csv", [{"text": "a", "label": "2"}], ("text", "label"))
    result = CliRunner().invoke(cli, ["data", "inspect", "--train", str(tmp_path / "train.parquet"),
                                      "--test", str(tmp_path / "test.csv")])
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and "leakage" in result.stdout


# Real processes: the stderr a user sees carries no traceback, for both commands that read data.
@pytest.mark.parametrize("case", ["undecodable-latin1", "one-megabyte-text", "mixed-label-types-in-jsonl"])
def test_bad_data_in_a_real_process_has_no_traceback(tmp_path, case):
    name, content, extra, fragments = BAD_TRAINING_DATA[case]
    paths = _write_case(tmp_path, name, content, extra)
    expected = [fragment.format(**{key: str(path) for key, path in paths.items()}) for fragment in fragments]
    command = ["finetune", *_data_arguments(paths), "-o", str(tmp_path / "out")] if case == "one-megabyte-text" \
        else ["data", "inspect", *_data_arguments(paths)]
    result = subprocess.run([sys.executable, "-m", "edgetune", *command], capture_output=True, text=True, timeout=300)
    assert_one_line_user_error(result.returncode, result.stderr, expected)
    assert not (tmp_path / "out").exists()


# Property: whatever bytes or records a file holds, loading it either succeeds or raises one-line
# EdgetuneError - never a pandas, JSON or Unicode exception that the CLI would show as a traceback.
_PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_CELL = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_DELIMITED = st.builds(
    lambda header, rows, separator: (separator.join(header) + "\n"
                                     + "\n".join(separator.join(row) for row in rows)).encode(),
    st.sampled_from([["text", "label"], ["label", "text"], ["text"], ["a", "b"]]),
    st.lists(st.lists(_CELL, max_size=4), max_size=8), st.sampled_from([",", "\t", ";", '"']))
_VALUE = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.floats(), st.none(), st.booleans(),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
_RECORDS = st.lists(st.one_of(st.dictionaries(st.sampled_from(["text", "label", "category", "x"]), _VALUE, max_size=3),
                              _VALUE), max_size=8)


def _load_or_user_error(path: Path) -> None:
    try:
        load_labelled_data(DataConfig(train=str(path)))
    except EdgetuneError as error:
        assert "\n" not in str(error) and str(path) in str(error)


@_PROPERTY
@given(content=st.one_of(st.binary(max_size=200), _DELIMITED), suffix=st.sampled_from([".csv", ".tsv"]))
def test_property_any_delimited_file_loads_or_is_a_one_line_error(tmp_path, content, suffix):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content)
    _load_or_user_error(path)


@_PROPERTY
@given(records=_RECORDS, as_array=st.booleans())
def test_property_any_json_records_load_or_are_a_one_line_error(tmp_path, records, as_array):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(records) if as_array else "\n".join(json.dumps(record) for record in records))
    _load_or_user_error(path)
