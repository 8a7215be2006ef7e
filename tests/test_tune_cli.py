"""`edgetune tune` on the command line: every config field has its flag, the CLI builds the recipe's config,
and a bad search-space file is one line naming the key, before any compute."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

from conftest import REPO_ROOT
from edgetune.cli.data_options import DATA_OPTIONS
from edgetune.cli.tune_command import TUNE_OPTIONS, tune_command
from edgetune.configuration import build_config
from edgetune.tune.config import TuneConfig
from tune_helpers import environment

SPACE = "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\nnum_layers: {type: int, low: 1, high: 2}\n"


def _keys(config_class: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(config_class)
    keys = []
    for field in dataclasses.fields(config_class):
        if not field.init:
            continue
        if dataclasses.is_dataclass(hints[field.name]):
            keys += _keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def test_every_field_but_the_space_has_its_flag_with_help():
    flags = {opt: param for param in tune_command.params for opt in param.opts}
    for key in _keys(TuneConfig):
        if key == "space":
            continue
        flag = "--" + key.replace(".", "-").replace("_", "-")
        assert flag in flags, f"{key}: no {flag}"
        assert (flags[flag].help or "").strip(), f"{flag} has no help"
    for short in ("--trials", "--timeout", "--budget", "--storage", "--study", "--pick", "--model", "--lr", "--space"):
        assert short in flags, short


def test_the_cli_builds_the_recipe_config(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    argv = ["--train", "train.csv", "-o", str(tmp_path / "run"), "--space", str(space), "--trials", "7",
            "--timeout", "60", "--storage", "sqlite:///x.db", "--study", "s1", "--pick", "most-accurate-under 2ms",
            "--model", "m", "--epochs", "2", "--lora-r", "4", "--objective", "macro_f1"]
    options = dict(tune_command.make_context("tune", argv).params)
    DATA_OPTIONS.build(options)
    from edgetune.cli.tune_command import read_space_file

    from_cli = TUNE_OPTIONS.build(options, {"space": read_space_file(options["space_file"])})
    import yaml

    from_recipe = build_config(TuneConfig, {
        "space": yaml.safe_load(SPACE), "trials": 7, "timeout_s": 60, "storage": "sqlite:///x.db", "study": "s1",
        "pick": "most-accurate-under 2ms", "base": {"model": "m", "epochs": 2, "lora": {"r": 4}},
        "objective": "macro_f1"}, "tune")
    assert from_cli == from_recipe


def test_a_bad_space_file_is_one_line_before_any_compute(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: float, low: 0, high: 1.0e-3, log: true}\n")
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,x\n")
    result = subprocess.run([sys.executable, "-m", "edgetune", "tune", "--train", str(train), "-o",
                             str(tmp_path / "run"), "--space", str(space)], capture_output=True, text=True,
                            env=environment(), cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: space.learning_rate.low: 0.0 must be greater than zero on a log scale (log: true)"]
    assert not (tmp_path / "run").exists()
