"""Hardening round 2, item 3: the label order is a pure function of the data.

Spellings that would silently become two classes (`01` and `1`, a label with a zero-width space) are
reported with one line naming the file, both spellings and the fix; odd labels (`²`, `--1`) sort
instead of crashing; and two processes under different PYTHONHASHSEEDs give one id-to-label map.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgetune
import edgetune_runtime
from conftest import write_csv
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import DataError


def _rows(labels: list[str], copies: int = 6) -> list[dict]:
    """`copies` rows per label, labels interleaved, so every class survives the validation carve-out."""
    return [{"text": f"message {index} about {label!r}", "category": label}
            for index in range(copies) for label in labels]


def _load(tmp_path: Path, labels: list[str], name: str = "train.csv"):
    return load_labelled_data(DataConfig(train=str(write_csv(tmp_path / name, _rows(labels)))))


@pytest.mark.parametrize("first, second", [("01", "1"), ("1", "+1"), ("1.0", "1"), ("-0", "0"), ("1e2", "100")])
def test_labels_equal_as_numbers_are_reported_as_colliding(tmp_path, first, second):
    with pytest.raises(DataError) as raised:
        _load(tmp_path, [first, "2", second])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "train.csv"))
    assert f"{first!r} (row 1)" in message and f"{second!r} (row 3)" in message
    assert "same number" in message and "write the label one way" in message


@pytest.mark.parametrize("plain, disguised", [
    ("spam", "spam\u200b"),        # zero-width space
    ("ham", "\ufeffham"),          # byte-order mark at the start of a value
    ("not spam", "not\xa0spam"),   # non-breaking space
    ("not spam", "not  spam"),     # two spaces
    ("caf\u00e9", "cafe\u0301"),   # precomposed and combining accent
    ("eggs", "eg\u2060gs"),        # word joiner
])
def test_labels_that_differ_only_by_invisible_characters_are_reported(tmp_path, plain, disguised):
    with pytest.raises(DataError) as raised:
        _load(tmp_path, [plain, "other", disguised])
    message = str(raised.value)
    assert "\n" not in message and "invisible characters" in message and "train.csv" in message
    # Both spellings are shown so a reader can tell them apart (escaped, never printed invisibly).
    assert "(row 1)" in message and "(row 3)" in message
    assert repr(disguised) in message or ascii(disguised) in message
    assert "write the label the same way in every row" in message


@pytest.mark.parametrize("labels, expected", [
    (["²", "1", "3"], ["1", "3", "²"]),              # str.isdigit('²') is True, int('²') raises
    (["--1", "-2", "5"], ["--1", "-2", "5"]),        # '--1'.lstrip('-').isdigit() is True, int('--1') raises
    (["٣", "1"], ["1", "٣"]),                        # an Arabic-Indic digit is a text label, not 3
    (["10", "9", "-1", "+5"], ["-1", "+5", "9", "10"]),  # integers still sort as numbers
])
def test_odd_labels_sort_without_crashing(tmp_path, labels, expected):
    assert _load(tmp_path, labels).label_names == expected


def test_a_test_label_spelled_differently_from_training_names_the_training_spelling(tmp_path):
    train = write_csv(tmp_path / "train.csv", _rows(["01", "02"]))
    test = write_csv(tmp_path / "test.csv", _rows(["1", "02"]))
    with pytest.raises(DataError, match=r"test\.csv, row 1: label '1' never appears.*training label '01' written "
                                        r"differently"):
        load_labelled_data(DataConfig(train=str(train), test=str(test)))


_PRINT_LABEL_ORDER = """
import json, sys
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.errors import DataError
outcomes = []
for path in sys.argv[1:]:
    try:
        outcomes.append(load_labelled_data(DataConfig(train=path)).label_names)
    except DataError as error:
        outcomes.append(str(error))
print(json.dumps(outcomes))
"""


def test_label_order_does_not_depend_on_the_hash_seed(tmp_path):
    files = [
        # On the old code '01' and '1' tie under int() and came out in set order: seed-dependent.
        write_csv(tmp_path / "colliding.csv", _rows(["01", "1", "2", "001", "3"])),
        write_csv(tmp_path / "integers.csv", _rows([str(n) for n in (12, 3, -4, 100, 7, 0)])),
        write_csv(tmp_path / "names.csv", _rows(["zeta", "Alpha", "beta", "²", "--1", "é"])),
    ]
    code_path = os.pathsep.join(str(Path(module.__file__).parents[1]) for module in (edgetune, edgetune_runtime))
    outcomes = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": code_path}
        completed = subprocess.run([sys.executable, "-c", _PRINT_LABEL_ORDER, *map(str, files)], env=environment,
                                   capture_output=True, text=True, timeout=120, check=True)
        outcomes.add(completed.stdout)
    assert len(outcomes) == 1, outcomes
    colliding, integers, names = json.loads(outcomes.pop())
    assert "same number" in colliding
    assert integers == ["-4", "0", "3", "7", "12", "100"]
    assert names == ["--1", "Alpha", "beta", "zeta", "²", "é"]


def test_the_command_line_reports_a_collision_as_one_error_line(tmp_path):
    from click.testing import CliRunner

    from edgetune.cli.main import cli

    train = write_csv(tmp_path / "train.csv", _rows(["1", "2", "01"]))
    result = CliRunner().invoke(cli, ["data", "inspect", "--train", str(train)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {train}: labels '1' (row 1) and '01' (row 3)"), lines
