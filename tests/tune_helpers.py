"""What the tune tests share: a tiny search (tiny BERT, 1 epoch, few rows) and a subprocess running it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_tune_values(tiny_bert_dir: Path, trials: int, **extra) -> dict:
    """A tune config mapping (as a recipe writes it) that trains the tiny BERT for one epoch per trial."""
    return {"base": {"model": str(tiny_bert_dir), "epochs": 1, "batch_size": 16, "early_stopping_patience": 0,
                     "max_length": 32},
            "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 5e-3, "log": True},
                      "label_smoothing": {"type": "float", "low": 0.0, "high": 0.1}},
            "trials": trials, "latency_texts": 8, "sampler_seed": 0, **extra}


def tune_command(train: Path, run_dir: Path, tiny_bert_dir: Path, trials: int, *extra: str) -> list[str]:
    """`edgetune tune` with the tiny search's settings as flags."""
    return [sys.executable, "-m", "edgetune", "tune", "--train", str(train), "-o", str(run_dir),
            "--model", str(tiny_bert_dir), "--epochs", "1", "--batch-size", "16", "--patience", "0",
            "--max-length", "32", "--trials", str(trials), "--latency-texts", "8", *extra]


def environment() -> dict[str, str]:
    paths = [str(REPO_ROOT / "toolchain"), str(REPO_ROOT / "runtime"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def start(command: list[str], log_path: Path) -> subprocess.Popen:
    handle = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment(), cwd=REPO_ROOT)
