"""Unlabelled transfer text: more inputs for the teacher to label, where labelled data is scarce."""

from __future__ import annotations

from pathlib import Path

from edgetune.data.load import pick_text_and_label
from edgetune.data.read import is_table_path, read_table
from edgetune.errors import DataError


def read_transfer_text(path: str) -> list[str]:
    """Texts of a .txt file (one per line) or of the text column of a CSV/TSV/JSONL/Parquet file.

    Blank lines are skipped; any labels in the file are ignored (the teacher provides them).
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise DataError(f"transfer text {source}: file not found; pass a .txt file (one text per line) or a table")
    if is_table_path(str(source)):
        texts, _ = pick_text_and_label(read_table(source), str(source))
    elif source.suffix.lower() in (".txt", ""):
        try:
            texts = source.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise DataError(f"transfer text {source}: bytes are not valid UTF-8 ({error.reason}); "
                            "re-save the file as UTF-8") from None
    else:
        raise DataError(f"transfer text {source}: unsupported file type {source.suffix}; use .txt, .csv, .tsv, "
                        ".jsonl or .parquet")
    texts = [text.strip() for text in texts if text and text.strip() and text.strip().lower() != "nan"]
    if not texts:
        raise DataError(f"transfer text {source}: no text found; the file is empty or every line is blank")
    return texts
