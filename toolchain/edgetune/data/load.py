"""Load a labelled dataset from files or a hub, validate it before any training, carve validation."""

from __future__ import annotations

import numbers
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy
import pandas

from edgetune.data.config import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES, DataConfig
from edgetune.data.read import is_table_path, stream_table
from edgetune.data.splits import stratified_holdout
from edgetune.errors import DataError
from edgetune_runtime.errors import InputError
from edgetune_runtime.hashing import sha256_bytes
from edgetune_runtime.texts_file import pick_column

# No classifier reads past a few thousand characters (max_length tokens); a text this long is nearly
# always rows merged by an unclosed quote, so it is refused rather than silently truncated.
MAX_TEXT_CHARACTERS = 100_000

# ASCII digits only: str.isdigit() is also true for '²' and '٣', which int() then rejects or reads differently.
_INTEGER_LABEL = re.compile(r"[+-]?[0-9]+")
_NUMBER_LABEL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass
class TextSplit:
    """One split: texts with their string labels, and where they came from (for error messages)."""

    name: str
    source: str
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int], name: str, source: str) -> TextSplit:
        return TextSplit(name, source, [self.texts[i] for i in indices], [self.labels[i] for i in indices])


@dataclass
class LabelledData:
    """Validated train/validation(/test) splits and the label set learned from train."""

    train: TextSplit
    validation: TextSplit
    test: TextSplit | None
    label_names: list[str]
    notes: list[str] = field(default_factory=list)

    def splits(self) -> list[TextSplit]:
        return [split for split in (self.train, self.validation, self.test) if split is not None]

    def fingerprint(self) -> str:
        """sha256 over every split's texts and labels: names the exact data a model saw.

        The same bytes as always, so the fingerprints older fine-tunes recorded (and resume by) still match.
        """
        parts = []
        for split in self.splits():
            parts.append(split.name.encode())
            for text, label in zip(split.texts, split.labels, strict=True):
                parts.append(text.encode("utf-8", "surrogatepass") + b"\x1f" + label.encode() + b"\x1e")
        return sha256_bytes(b"".join(parts))


def load_labelled_data(config: DataConfig) -> LabelledData:
    """Read and validate every split named by `config`; raise `DataError` on the first problem."""
    notes: list[str] = []
    if not Path(config.train).exists() and not is_table_path(config.train):
        hub_splits = _load_hub_splits(config)
        train = hub_splits["train"]
        validation = _file_split_or(config.validation, "validation", config, hub_splits.get("validation"))
        test = _file_split_or(config.test, "test", config, hub_splits.get("test"))
    else:
        train = _read_split(config.train, "train", config)
        validation = _read_split(config.validation, "validation", config) if config.validation else None
        test = _read_split(config.test, "test", config) if config.test else None

    label_names = _label_order(train.labels, train.source)
    if len(label_names) < 2:
        raise DataError(
            f"{train.source}: every training row has the label {label_names[0]!r}; "
            "a classifier needs at least two classes - check the label column"
        )
    for split in (validation, test):
        if split is not None:
            _check_labels_known(split, set(label_names))

    if validation is None:
        kept, held_out = stratified_holdout(train.labels, config.validation_fraction, config.split_seed)
        source = f"{train.source} (carved: {config.validation_fraction:.0%} of each class, seed {config.split_seed})"
        validation = train.subset(held_out, "validation", source)
        train = train.subset(kept, "train", train.source)
        notes.append(f"no validation data given: held out {len(validation)} training rows for model selection")
        if len(set(train.labels)) < len(label_names) or not held_out:
            raise DataError(f"{train.source}: too few rows to carve a validation split "
                            f"({len(train) + len(validation)} rows); add rows or pass --validation")
    return LabelledData(train, validation, test, label_names, notes)


def _label_order(labels: list[str], source: str = "the training data") -> list[str]:
    """Sorted labels, a pure function of the data; numerically when every label is an integer, so '10' follows '9'.

    Spellings that would silently train as two classes ('01' and '1'; 'a' and 'a' with a zero-width space)
    are refused first, so the order never depends on set iteration (which changes with PYTHONHASHSEED).
    """
    _refuse_label_collisions(labels, source)
    unique = set(labels)
    if all(_is_integer(label) for label in unique):
        # The spelling breaks ties; none are left after the collision check, but the order must be total regardless.
        return sorted(unique, key=lambda label: (Decimal(label), label))
    return sorted(unique)


def _refuse_label_collisions(labels: list[str], source: str) -> None:
    """Raise `DataError` naming the first two spellings that are one number, or one text to the eye."""
    first_row: dict[str, int] = {}
    for row, label in enumerate(labels, start=1):
        first_row.setdefault(label, row)
    problems = (
        (_number_value, "are the same number written two ways", "write the label one way in every row"),
        (visible_form, "differ only by invisible characters (zero-width, byte-order mark, non-breaking or repeated "
         "spaces, Unicode composition)", "write the label the same way in every row (no zero-width characters, "
         "plain single spaces)"),
    )
    for key_of, problem, fix in problems:
        spelling_of: dict[object, str] = {}
        for label in first_row:  # in order of first appearance, so the report names the earliest pair
            key = key_of(label)
            if key is None:
                continue
            earlier = spelling_of.setdefault(key, label)
            if earlier != label:
                shown = _distinct_reprs(earlier, label)
                raise DataError(f"{source}: labels {shown[0]} (row {first_row[earlier]}) and {shown[1]} "
                                f"(row {first_row[label]}) {problem}, so they would train as two classes; {fix}")


def _number_value(label: str) -> Decimal | None:
    """The label's value when it is a decimal number ('01', '+1', '1.0', '1e0' are all 1), else None."""
    if not _NUMBER_LABEL.fullmatch(label):
        return None
    try:
        return Decimal(label)
    except InvalidOperation:  # an exponent beyond Decimal's range: leave it a plain text label
        return None


def visible_form(text: str) -> str:
    """What a reader sees: composed characters, no format or control characters, single plain spaces."""
    composed = unicodedata.normalize("NFC", text)
    visible = "".join(character for character in composed if unicodedata.category(character) not in ("Cf", "Cc"))
    return " ".join(visible.split())


def _distinct_reprs(first: str, second: str) -> tuple[str, str]:
    # repr escapes zero-width and non-breaking characters; only composed vs decomposed letters need ascii().
    return (repr(first), repr(second)) if repr(first) != repr(second) else (ascii(first), ascii(second))


def pick_data_column(frame: pandas.DataFrame | list[str], wanted: str | None, candidates: tuple[str, ...], role: str,
                     source: str) -> str:
    """The column holding the text or label of `frame` (or of these column names): the runtime's rule and
    message, as a DataError, so a file that trains a model is read the same way on the device."""
    columns = frame if isinstance(frame, list) else [str(column) for column in frame.columns]
    try:
        return pick_column(columns, wanted, candidates, role, source)
    except InputError as error:
        raise DataError(str(error)) from None


def frame_to_split(frame: pandas.DataFrame, name: str, source: str, config: DataConfig) -> TextSplit:
    """One split of a table already in memory (a hub dataset, held-out data), checked row by row."""
    columns = [str(column) for column in frame.columns]
    return _rows_to_split(columns, iter(dict(zip(columns, values, strict=True))
                                        for values in frame.itertuples(index=False, name=None)), name, source, config)


def _rows_to_split(columns: list[str], rows: Iterator[dict[str, object]], name: str, source: str,
                   config: DataConfig) -> TextSplit:
    """Check each row as it arrives (a bad row early fails before the rest of the file is read)."""
    text_column = pick_data_column(columns, config.text_column, TEXT_COLUMN_CANDIDATES, "text", source)
    label_column = pick_data_column(columns, config.label_column, LABEL_COLUMN_CANDIDATES, "label", source)
    texts, labels = [], []
    first_label: tuple[int, object, str] | None = None  # row, value and kind of the first label
    for row, values in enumerate(rows, start=1):
        text, label = values.get(text_column), values.get(label_column)
        where = f"{source}, row {row}"
        if not isinstance(text, str):
            raise DataError(f"{where}, column {text_column!r}: expected text, got {type(text).__name__} {text!r}")
        if not visible_form(text):
            invisible = f" (only invisible characters: {code_points(text)})" if text.strip() else ""
            raise DataError(f"{where}, column {text_column!r}: the text is empty{invisible}; remove the row or fill "
                            "it in")
        if len(text) > MAX_TEXT_CHARACTERS:
            raise DataError(f"{where}, column {text_column!r}: the text is {len(text):,} characters long "
                            f"(limit {MAX_TEXT_CHARACTERS:,}); an unclosed quote may have merged rows - check the "
                            "quoting, or shorten the text (a model reads only its first max_length tokens)")
        if label is None or (isinstance(label, float) and label != label):
            raise DataError(f"{where}, column {label_column!r}: the label is missing or not a single value")
        kind = _label_kind(label)
        if isinstance(label, (list, dict)) or (hasattr(label, "shape") and numpy.ndim(label) != 0):
            raise DataError(f"{where}, column {label_column!r}: the label is missing or not a single value (found "
                            f"{kind} {_preview(label)}); store one class name or number per row")
        if kind not in ("text", "a number", "a boolean"):
            # str() would turn b'x' into the label "b'x'", which looks like data.
            raise DataError(f"{where}, column {label_column!r}: the label is {kind} ({_preview(label)}), not one "
                            "text or number; store one class name or number per row in the label column")
        if first_label is None:
            first_label = (row, label, kind)
        elif kind != first_label[2]:
            # JSONL/Parquet keep types: 1 and "positive" in one column are two encodings mixed by mistake.
            raise DataError(f"{where}, column {label_column!r}: label {label!r} is {kind} but row {first_label[0]}'s "
                            f"label {first_label[1]!r} is {first_label[2]}; use one kind of label in the whole file")
        if isinstance(label, float) and label.is_integer():
            label = int(label)  # Parquet/JSON readers turn int columns with gaps into floats
        label = str(label).strip()
        if not label:
            raise DataError(f"{where}, column {label_column!r}: the label is empty; remove the row or label it")
        texts.append(text)
        labels.append(label)
    return TextSplit(name, source, texts, labels)


def code_points(text: str, shown: int = 4) -> str:
    """`U+200B U+FEFF ...`: invisible characters named, since printing them shows nothing."""
    points = [f"U+{ord(character):04X}" for character in text if not character.isspace()]
    return " ".join(points[:shown]) + (" ..." if len(points) > shown else "")


def _preview(value: object, characters: int = 40) -> str:
    shown = repr(value.tolist() if hasattr(value, "tolist") else value)
    return shown if len(shown) <= characters else shown[:characters] + "..."


def _label_kind(label: object) -> str:
    if isinstance(label, str):
        return "text"
    if isinstance(label, bool) or type(label).__name__ == "bool_":
        return "a boolean"
    return "a number" if isinstance(label, numbers.Number) else type(label).__name__


def pick_text_and_label(frame: pandas.DataFrame, source: str) -> tuple[list[str], list[str]]:
    """Texts and (possibly empty) labels of an arbitrary file, for checks that only need text."""
    text_column = pick_data_column(frame, None, TEXT_COLUMN_CANDIDATES, "text", source)
    label_column = next((c for c in frame.columns if str(c).lower() in LABEL_COLUMN_CANDIDATES), None)
    texts = [str(text) for text in frame[text_column].tolist()]
    labels = [str(label) for label in frame[label_column].tolist()] if label_column is not None else [""] * len(texts)
    return texts, labels


def _read_split(path: str, name: str, config: DataConfig) -> TextSplit:
    table = stream_table(path)
    return _rows_to_split(table.columns, table.rows, name, path, config)


def _file_split_or(path: str | None, name: str, config: DataConfig, fallback: TextSplit | None) -> TextSplit | None:
    return _read_split(path, name, config) if path else fallback


def _check_labels_known(split: TextSplit, known: set[str]) -> None:
    for row, label in enumerate(split.labels, start=1):
        if label not in known:
            preview = ", ".join(sorted(known)[:5]) + (", ..." if len(known) > 5 else "")
            fix = "add training examples for it or remove these rows"
            training_numbers = all(_is_integer(name) for name in known)
            same = next((name for name in sorted(known) if _same_label_to_a_reader(name, label)), None)
            if same is not None:  # e.g. '1' in test and '01' in train, or a zero-width space in one of them
                fix = f"it is the training label {same!r} written differently: write it as {same!r}"
            elif _is_integer(label) != training_numbers:  # e.g. 0/1 in train, negative/positive in test
                fix = (f"the training labels are {'numbers' if training_numbers else 'names'} and this one is not: "
                       "encode the labels the same way in every split")
            raise DataError(
                f"{split.source}, row {row}: label {label!r} never appears in the training data "
                f"(training labels: {preview}); {fix}"
            )


def _same_label_to_a_reader(first: str, second: str) -> bool:
    number = _number_value(first)
    return (number is not None and number == _number_value(second)) or visible_form(first) == visible_form(second)


def _is_integer(label: str) -> bool:
    return _INTEGER_LABEL.fullmatch(label) is not None


def _load_hub_splits(config: DataConfig) -> dict[str, TextSplit]:
    """Load a hub dataset by id (needs a network or the datasets cache); labels become names."""
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise DataError(f"reading hub dataset {config.train!r} needs the datasets package: {error}") from None
    try:
        dataset_dict = datasets.load_dataset(config.train)
    except Exception as error:  # noqa: BLE001 - offline, missing or private datasets all end here
        raise DataError(
            f"{config.train}: not a local file, and loading it as a hub dataset failed ({type(error).__name__}); "
            "pass a path to a CSV/TSV/JSONL/Parquet file, or run where the dataset hub is reachable"
        ) from None
    splits = {}
    for split_name, hub_name in (("train", "train"), ("validation", "validation"), ("test", "test")):
        if hub_name not in dataset_dict:
            continue
        hub_split = dataset_dict[hub_name]
        frame = hub_split.to_pandas()
        label_column = config.label_column or next(
            (c for c in LABEL_COLUMN_CANDIDATES if c in frame.columns), None)
        feature = hub_split.features.get(label_column) if label_column else None
        if feature is not None and hasattr(feature, "int2str"):  # ClassLabel: store names, not ids
            frame[label_column] = [feature.int2str(int(value)) for value in frame[label_column]]
        splits[split_name] = frame_to_split(frame, split_name, f"{config.train}[{hub_name}]", config)
    if "train" not in splits:
        raise DataError(f"{config.train}: the hub dataset has no 'train' split (it has {', '.join(dataset_dict)})")
    return splits
