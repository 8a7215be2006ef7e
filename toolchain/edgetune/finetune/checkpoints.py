"""Which training checkpoint a resumed run may start from.

The Hugging Face trainer writes a checkpoint in place, file by file, and `trainer_state.json` last;
a process killed mid-save (SIGKILL, OOM killer, full disk) leaves a newer but partial checkpoint
that the trainer's own `get_last_checkpoint` would pick and then fail to load.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"  # the trainer writes it after the weights, optimiser, scheduler and RNG


def last_complete_checkpoint(checkpoints: Path, *, remove_partial: bool) -> Path | None:
    """The newest checkpoint whose save finished, or None; with `remove_partial`, delete unfinished ones.

    Removing them (on the main process only) keeps a later checkpoint rotation from ever preferring one.
    """
    complete: list[tuple[int, Path]] = []
    for path in checkpoints.iterdir() if checkpoints.is_dir() else ():
        match = _CHECKPOINT.match(path.name)
        if not match or not path.is_dir():
            continue
        try:
            json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if remove_partial:
                log.warning("removing %s: the run was interrupted while writing it", path)
                shutil.rmtree(path, ignore_errors=True)
            continue
        complete.append((int(match.group(1)), path))
    return max(complete)[1] if complete else None
