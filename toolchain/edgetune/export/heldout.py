"""Held-out text for the checks after training: a file the user names, or the data a model recorded.

A file (`--validation FILE`, `--calibration FILE`) is read like fine-tuning data: CSV, TSV, JSONL
or Parquet, columns detected from common names or named by `--text-column`/`--label-column`.
Without one, the splits `edgetune finetune` recorded are rebuilt, but only when that record exists
and its files are on this machine: a model from elsewhere (an `optimum-cli export onnx` directory,
a colleague's checkpoint) has no record, and its recorded paths would not exist here anyway.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.data.config import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES, DataConfig
from edgetune.errors import EdgetuneError
from edgetune.stage_manifest import read_stage_manifest
from edgetune.tasks.task import HeldOutText


def read_heldout_file(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                      labels_required: bool = False) -> HeldOutText:
    """Texts (and labels, '' where the file has no label column) of a held-out data file."""
    # The same reader and column rules as fine-tuning data, so a file that trained a model checks it too.
    from edgetune.data.load import frame_to_split, pick_data_column
    from edgetune.data.read import read_table

    source = str(path)
    frame = read_table(source)
    has_labels = label_column is not None or any(str(c).lower() in LABEL_COLUMN_CANDIDATES for c in frame.columns)
    if labels_required or has_labels:
        split = frame_to_split(frame, "held-out", source,
                                DataConfig(train=source, text_column=text_column, label_column=label_column))
        return HeldOutText(split.texts, split.labels, source)
    column = pick_data_column(frame, text_column, TEXT_COLUMN_CANDIDATES, "text", source)
    texts = [str(text) for text in frame[column].tolist()]
    return HeldOutText(texts, [""] * len(texts), source)


class RecordedData:
    """The splits `edgetune finetune` recorded in a manifest's `data` entry, rebuilt only when asked."""

    def __init__(self, record: dict | None, owner: Path) -> None:
        self.config = (record or {}).get("config")
        self.owner = owner
        self._data = None

    def unavailable(self) -> str | None:
        """Why the recorded data cannot be read here, or None when it can."""
        from edgetune.data.read import is_table_path

        if not self.config:
            return f"{self.owner} records no training data (it was not trained by `edgetune finetune`)"
        for key in ("train", "validation", "test"):
            value = self.config.get(key)
            # A hub dataset id is no path; anything that looks like a file must be here.
            if value and (is_table_path(value) or Path(value).is_absolute()) and not Path(value).exists():
                return f"{self.owner} records its {key} data at {value}, which is not on this machine"
        return None

    def split(self, name: str, flag: str) -> HeldOutText:
        """One recorded split ('train', 'validation' or 'test'), or a one-line error naming `flag`."""
        reason = self.unavailable()
        if reason is not None:
            raise EdgetuneError(f"{reason}; pass {flag} FILE with held-out text")
        chosen = self.optional_split(name)
        if chosen is None:
            raise EdgetuneError(f"{self.owner} was trained without a {name} split; pass {flag} FILE")
        return chosen

    def optional_split(self, name: str) -> HeldOutText | None:
        """One recorded split, or None when there is no such split or no usable record."""
        if self.unavailable() is not None:
            return None
        if self._data is None:
            from edgetune.data.load import load_labelled_data

            self._data = load_labelled_data(DataConfig.from_recorded(self.config))
        chosen = {"train": self._data.train, "validation": self._data.validation, "test": self._data.test}[name]
        return None if chosen is None else HeldOutText(chosen.texts, chosen.labels, chosen.source)


def heldout_texts(explicit: str | None, recorded: RecordedData, split: str, flag: str, *,
                  text_column: str | None = None, label_column: str | None = None,
                  labels_required: bool = False) -> HeldOutText:
    """The file the user named for `flag`, else the recorded `split`."""
    if explicit:
        return read_heldout_file(explicit, text_column=text_column, label_column=label_column,
                                 labels_required=labels_required)
    return recorded.split(split, flag)


def heldout_split(model_dir: Path, split: str, texts_file: str | None = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of `split` as the fine-tuned model in `model_dir` saw it, or of `texts_file`."""
    recorded = RecordedData(read_stage_manifest(Path(model_dir)).get("data"), Path(model_dir))
    held_out = heldout_texts(texts_file, recorded, split, "--validation")
    return held_out.texts, held_out.labels
