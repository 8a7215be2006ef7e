"""The recipe's `tune` stage: the search runs in a work directory beside the stage's output, which then
receives the chosen trial's model (so export, quantize and bundle stages take it like a fine-tune's).

The work directory (`.<output>.work`, kept by the runner across kills, like fine-tuning checkpoints)
holds the study, so a recipe run killed mid-search resumes the same study.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from edgetune.atomic import atomic_directory
from edgetune.data.config import DataConfig
from edgetune.tune.config import TuneConfig

REPORT_DIR = "tune"  # inside the output model directory: the front, the trial table and the pick


def tune_into(tune: Callable, data_config: DataConfig, config: TuneConfig, output_dir: Path):
    from edgetune.finetune.train import work_directory_for

    run_dir = work_directory_for(output_dir)
    result = tune(data_config, config, run_dir)
    with atomic_directory(output_dir) as staging:
        shutil.copytree(result.files["model"], staging, dirs_exist_ok=True)
        (staging / REPORT_DIR).mkdir()
        for name in ("plot", "html", "trials"):
            shutil.copy2(result.files[name], staging / REPORT_DIR / Path(result.files[name]).name)
    return result
