"""The stage commands' flags are generated from the configs: one name, one default, one help text.

Everything here goes through the real parsers: argv through the Click command's `make_context` and
the command's own builder, a recipe through `edgetune.recipes.load.load_recipe` from a YAML file.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import typing
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from conftest import write_csv
from edgetune.cli.config_options import ConfigOptions
from edgetune.cli.data_command import inspect
from edgetune.cli.data_options import CHAT_DATA_OPTIONS, DATA_OPTIONS
from edgetune.cli.distill_command import DISTILL_OPTIONS, distill_command
from edgetune.cli.export_command import (
    BUNDLE_OPTIONS,
    CHAT_EXPORT_OPTIONS,
    CHAT_QUANTIZE_OPTIONS,
    EXPORT_OPTIONS,
    GENERATION_BUNDLE_OPTIONS,
    QUANTIZE_OPTIONS,
    bundle_command,
    export_command,
    quantize_command,
)
from edgetune.cli.finetune_command import CHAT_FINETUNE_OPTIONS, FINETUNE_OPTIONS, finetune_command
from edgetune.cli.main import cli
from edgetune.cli.report_command import REPORT_OPTIONS, report_command
from edgetune.cli.task_options import canonical_task
from edgetune.configuration import HELP, build_config
from edgetune.errors import ConfigError
from edgetune.finetune.config import LoraSettings
from edgetune.quantize.variants import DEFAULT_VARIANTS, PRESETS, VARIANTS
from edgetune.recipes.data_source import resolve_data
from edgetune.recipes.load import load_recipe
from edgetune.recipes.schema import RecipeData, ReportSettings
from edgetune_runtime.cli import main as runtime_cli

ROOT = Path(__file__).resolve().parents[1]

# command -> (its config options, the flags that are not config fields: where output goes and how to treat it);
# `command --task X` names a task command's flag set for task X.
STAGE_COMMANDS: dict[str, tuple[click.Command, tuple[ConfigOptions, ...], set[str]]] = {
    "finetune": (finetune_command, (DATA_OPTIONS, FINETUNE_OPTIONS),
                 {"--output", "--resume", "--force", "--keep-checkpoints", "--help", "--task"}),
    "finetune --task chat": (finetune_command, (CHAT_DATA_OPTIONS, CHAT_FINETUNE_OPTIONS),
                             {"--output", "--resume", "--force", "--keep-checkpoints", "--help", "--task"}),
    "distill": (distill_command, (DATA_OPTIONS, DISTILL_OPTIONS),
                {"--output", "--resume", "--force", "--keep-checkpoints", "--help"}),
    "export": (export_command, (EXPORT_OPTIONS,), {"--force", "--help", "--task"}),
    "quantize": (quantize_command, (QUANTIZE_OPTIONS,), {"--list", "--force", "--help", "--task"}),
    "bundle": (bundle_command, (BUNDLE_OPTIONS,), {"--force", "--help", "--task"}),
    # A command's flag set for another task: `--task` in the name picks it (`TaskCommand.params_for`).
    "export --task chat": (export_command, (CHAT_EXPORT_OPTIONS,), {"--force", "--help", "--task"}),
    "quantize --task chat": (quantize_command, (CHAT_QUANTIZE_OPTIONS,), {"--list", "--force", "--help", "--task"}),
    "bundle --task chat": (bundle_command, (GENERATION_BUNDLE_OPTIONS,), {"--force", "--help", "--task"}),
    "report": (report_command, (REPORT_OPTIONS,), {"--output", "--force", "--help"}),
    "data inspect": (inspect, (DATA_OPTIONS,), {"--model", "--max-length", "--report", "--help", "--task"}),
    "data inspect --task chat": (inspect, (CHAT_DATA_OPTIONS,),
                                 {"--model", "--max-length", "--report", "--help", "--task"}),
}


def _field_keys(config_class: type, prefix: str = "") -> list[str]:
    """Dotted keys of every field, nested configs flattened, read from the dataclass itself."""
    hints = typing.get_type_hints(config_class)
    keys = []
    for field in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[field.name]):
            keys += _field_keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def _flag_of(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


def _primary_flags(command: click.Command, name: str = "") -> dict[str, click.Option]:
    """The command's flags; for `command --task X`, those of the flag set task X parses with."""
    _, _, task = name.partition(" --task ")
    params = command.params_for(canonical_task(task)) if task else command.params
    return {next(opt for opt in param.opts if opt.startswith("--")): param
            for param in params if isinstance(param, click.Option)}


@pytest.mark.parametrize("name", STAGE_COMMANDS)
def test_every_field_has_its_flag_and_every_flag_is_a_field(name):
    command, configs, non_config = STAGE_COMMANDS[name]
    flags = _primary_flags(command, name)
    expected = {_flag_of(key) for options in configs for key in _field_keys(options.config_class)}
    missing = expected - set(flags)
    assert not missing, f"{name}: fields without a flag named after them: {sorted(missing)}"
    strays = set(flags) - expected - non_config
    assert not strays, f"{name}: flags that set no config field: {sorted(strays)}"
    names = [opt for option in flags.values() for opt in option.opts + option.secondary_opts]
    assert len(names) == len(set(names)), f"{name}: a flag name is used twice"


def _all_commands(group: click.Command, path: str = ""):
    yield path or group.name, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _all_commands(command, f"{path} {name}".strip())


def test_every_option_of_every_command_has_help():
    undocumented = [f"{path} {param.opts[0]}" for path, command in _all_commands(cli)
                    for param in command.params if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not undocumented, undocumented


def test_every_config_field_declares_its_help_once():
    from edgetune.recipes.bench_stage import BenchStageConfig

    classes = {options.config_class for _, configs, _ in STAGE_COMMANDS.values() for options in configs}
    classes |= {RecipeData, ReportSettings, BenchStageConfig}
    classes |= {hint for config_class in list(classes) for hint in typing.get_type_hints(config_class).values()
                if dataclasses.is_dataclass(hint)}  # nested: LoraSettings, FinetuneConfig under distill
    assert LoraSettings in classes
    for config_class in classes:
        for field in dataclasses.fields(config_class):
            assert field.metadata.get(HELP, "").strip(), f"{config_class.__name__}.{field.name} has no help"
        # The help lives in the metadata only: an attribute docstring would be a second copy to drift.
        source = Path(sys.modules[config_class.__module__].__file__)
        tree = ast.parse(source.read_text())
        body = next(node for node in ast.walk(tree)
                    if isinstance(node, ast.ClassDef) and node.name == config_class.__name__).body
        for before, after in zip(body, body[1:], strict=False):
            assert not (isinstance(before, ast.AnnAssign) and isinstance(after, ast.Expr)
                        and isinstance(after.value, ast.Constant)), \
                f"{config_class.__name__}.{before.target.id}: help given as a docstring too"


def parse(command: click.Command, argv: list[str]) -> dict:
    """The keyword arguments the real command would be called with."""
    return dict(command.make_context(command.name, list(argv)).params)  # Click consumes the list it gets


def cli_config(name: str, argv: list[str], which: int = -1):
    command, configs, _ = STAGE_COMMANDS[name]
    options = parse(command, argv)
    built = [config.build(options) for config in configs]
    return built[which]


def recipe(tmp_path: Path, data: dict, stages: dict):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "same", "data": data, "stages": stages}, sort_keys=False))
    return load_recipe(path)


@pytest.fixture
def data_files(tmp_path):
    rows = [{"text": f"text {n}", "intent": "ab"[n % 2]} for n in range(20)]
    return {split: str(write_csv(tmp_path / f"{split}.csv", rows, ("text", "intent")).resolve())
            for split in ("train", "test")}


def test_finetune_and_data_from_the_cli_equal_the_recipe(tmp_path, data_files):
    argv = ["--train", data_files["train"], "--test", data_files["test"], "--label-column", "intent",
            "--split-seed", "7", "--validation-fraction", "0.2", "-o", str(tmp_path / "out"),
            "--model", "some/model", "--method", "lora", "--lr", "0.002", "--grad-accum", "2", "--scheduler", "cosine",
            "--patience", "0", "--no-group-by-length", "--freeze-embeddings", "--lora-r", "4",
            "--lora-target-modules", "query,value", "--layers", "4,0,2", "--seed", "3", "--epochs", "2"]
    loaded = recipe(tmp_path, {"train": data_files["train"], "test": data_files["test"], "label_column": "intent",
                               "split_seed": 7, "validation_fraction": 0.2},
                    {"finetune": {"model": "some/model", "method": "lora", "learning_rate": 0.002,
                                  "gradient_accumulation_steps": 2, "lr_scheduler": "cosine",
                                  "early_stopping_patience": 0, "group_by_length": False, "freeze_embeddings": True,
                                  "lora": {"r": 4, "target_modules": ["query", "value"]}, "layers": [4, 0, 2],
                                  "seed": 3, "epochs": 2}})
    config = cli_config("finetune", argv)
    assert config == loaded.stages["finetune"].config
    assert config.early_stopping_patience is None and config.layers == (0, 2, 4)
    assert config.lora.target_modules == ("query", "value")
    assert cli_config("finetune", argv, which=0) == resolve_data(loaded.data).config
    assert cli_config("data inspect", argv[:10]) == resolve_data(loaded.data).config
    # Nothing given on either side: the same defaults.
    bare = recipe(tmp_path, {"train": data_files["train"]}, {"finetune": {}})
    assert cli_config("finetune", ["--train", data_files["train"], "-o", "x"]) == bare.stages["finetune"].config


def test_distill_from_the_cli_equals_the_recipe(tmp_path, data_files):
    teacher = str(tmp_path / "teacher")
    argv = ["--train", data_files["train"], "-o", str(tmp_path / "out"), "--teacher", teacher,
            "--student", "small/model", "--student-layers", "0,2", "--epochs", "3", "--lr", "0.0001",
            "--temperature", "4", "--augment-copies", "1", "--lora-alpha", "8", "--seed", "5"]
    loaded = recipe(tmp_path, {"train": data_files["train"]},
                    {"distill": {"teacher": teacher, "temperature": 4.0, "augment_copies": 1,
                                 "student": {"model": "small/model", "layers": [0, 2], "epochs": 3,
                                             "learning_rate": 0.0001, "lora": {"alpha": 8}, "seed": 5}}})
    config = cli_config("distill", argv)
    assert config == loaded.stages["distill"].config
    assert config.student.model == "small/model" and config.student.layers == (0, 2) and config.student.seed == 5
    # The flags named after the recipe keys set the same fields.
    long_names = ["--train", data_files["train"], "-o", "out", "--teacher", teacher, "--student-model", "small/model",
                  "--student-layers", "0,2", "--student-epochs", "3", "--student-learning-rate", "0.0001",
                  "--temperature", "4", "--augment-copies", "1", "--student-lora-alpha", "8", "--student-seed", "5"]
    assert cli_config("distill", long_names) == config


def test_export_quantize_bundle_from_the_cli_equal_the_recipe(tmp_path, data_files):
    model = tmp_path / "model"
    model.mkdir()
    loaded = recipe(tmp_path, {"train": data_files["train"]}, {
        "finetune": {},
        "export": {"opset": 18, "validation": data_files["test"], "label_column": "intent", "optimize": False},
        "int8": {"stage": "quantize", "auto": True, "max_accuracy_drop": 1.0, "calibration": data_files["train"],
                 "validation": data_files["test"], "keep": "arm64"},
        "bundle": {"ort_format": True, "zip": True, "golden_examples": 8, "validation": data_files["test"]},
    })
    paths = [str(model), str(tmp_path / "out")]
    export = cli_config("export", [*paths, "--opset", "18", "--texts", data_files["test"], "--label-column", "intent",
                                   "--no-optimize"])
    assert export == loaded.stages["export"].config and export.validation == data_files["test"]
    quantize = cli_config("quantize", [*paths, "--auto", "--max-accuracy-drop", "1", "--calibration",
                                       data_files["train"], "--validation", data_files["test"], "--keep", "arm64"])
    assert quantize == loaded.stages["int8"].config
    bundle = cli_config("bundle", [*paths, "--ort", "--zip", "--golden-examples", "8", "--validation",
                                   data_files["test"]])
    assert bundle == loaded.stages["bundle"].config and bundle.ort_format


def test_chat_export_and_quantize_from_the_cli_equal_the_recipe_stage_config(tmp_path):
    from edgetune.tasks.text_generation.stages import CHAT_EXPORT_STAGES

    paths, chat = [str(tmp_path), "o"], ["--task", "chat"]
    export = cli_config("export --task chat", [*paths, *chat, "--precision", "int4", "--int4-block-size", "64",
                                               "--context-length", "512", "--parity-prompts", "4"])
    assert export == build_config(CHAT_EXPORT_STAGES["export"].config_class,
                                  {"precision": "int4", "int4_block_size": 64, "context_length": 512,
                                   "parity_prompts": 4}, "export")
    quantize = cli_config("quantize --task chat", [*paths, *chat, "--variant", "int8", "--variant", "int4-block32",
                                                   "--max-quality-drop", "5", "--keep", "int8"])
    assert quantize == build_config(CHAT_EXPORT_STAGES["quantize"].config_class,
                                    {"variants": ["int8", "int4-block32"], "max_quality_drop": 5, "keep": "int8"},
                                    "quantize")


def test_report_from_the_cli_builds_its_config(tmp_path):
    config = cli_config("report", ["a.json", "-o", str(tmp_path), "--latency", "p90_ms", "--batch-size", "4"])
    assert (config.latency, config.batch_size, config.title) == ("p90_ms", 4, "Accuracy against batch-1 latency")


@pytest.mark.parametrize(("name", "alias", "primary"), [
    ("finetune", ["--lr", "0.01"], ["--learning-rate", "0.01"]),
    ("finetune", ["--grad-accum", "4"], ["--gradient-accumulation-steps", "4"]),
    ("finetune", ["--scheduler", "cosine"], ["--lr-scheduler", "cosine"]),
    ("finetune", ["--patience", "5"], ["--early-stopping-patience", "5"]),
    ("distill", ["--student", "m"], ["--student-model", "m"]),
    ("distill", ["--epochs", "2"], ["--student-epochs", "2"]),
    ("distill", ["--grad-accum", "4", "--lora-r", "2", "--no-group-by-length"],
     ["--student-gradient-accumulation-steps", "4", "--student-lora-r", "2", "--no-student-group-by-length"]),
    ("export", ["--texts", "held.csv"], ["--validation", "held.csv"]),
    ("quantize", ["--variant", "fp16", "--variant", "dynamic-int8"], ["--variants", "fp16,dynamic-int8"]),
    ("bundle", ["--ort"], ["--ort-format"]),
    ("bundle", ["--no-ort"], ["--no-ort-format"]),
])
def test_todays_short_names_still_work(tmp_path, data_files, name, alias, primary):
    required = {"finetune": ["--train", data_files["train"], "-o", "out"],
                "distill": ["--train", data_files["train"], "-o", "out", "--teacher", "t"]}
    required = required.get(name, [str(tmp_path), "o"])
    assert cli_config(name, required + alias) == cli_config(name, required + primary)
    if not alias[0].startswith("--no-"):  # --no-ort sets the default
        assert cli_config(name, required + alias) != cli_config(name, required), f"{alias} changed nothing"


def test_split_seed_is_its_own_flag_beside_the_training_seed(data_files):
    options = parse(finetune_command, ["--train", data_files["train"], "-o", "out", "--split-seed", "9", "--seed", "1"])
    data, config = DATA_OPTIONS.build(options), FINETUNE_OPTIONS.build(options)
    assert (data.split_seed, config.seed) == (9, 1)


def test_patience_zero_turns_early_stopping_off_both_ways(tmp_path, data_files):
    argv = ["--train", data_files["train"], "-o", "out"]
    assert cli_config("finetune", [*argv, "--patience", "0"]).early_stopping_patience is None
    loaded = recipe(tmp_path, {"train": data_files["train"]}, {"finetune": {"early_stopping_patience": 0}})
    assert loaded.stages["finetune"].config.early_stopping_patience is None
    assert cli_config("finetune", argv).early_stopping_patience == 3
    with pytest.raises(ConfigError, match="--early-stopping-patience: -1 must not be negative"):
        cli_config("finetune", [*argv, "--patience", "-1"])
    with pytest.raises(ConfigError, match="early_stopping_patience: -1 must not be negative"):
        recipe(tmp_path, {"train": data_files["train"]}, {"finetune": {"early_stopping_patience": -1}})


def _graph(name: str):
    """What decides the graph a variant builds: its spec without the name and the words."""
    return dataclasses.replace(VARIANTS[name], name="", description="")


def test_auto_tries_every_distinct_variant_both_ways(tmp_path, data_files):
    loaded = recipe(tmp_path, {"train": data_files["train"]},
                    {"finetune": {}, "export": {}, "int8": {"stage": "quantize", "auto": True}})
    from_recipe = loaded.stages["int8"].config.variants
    from_cli = cli_config("quantize", [str(tmp_path), "o", "--auto"]).variants
    assert from_cli == from_recipe == tuple(VARIANTS)
    graphs = [_graph(name) for name in from_cli]
    assert len(graphs) == len(set(graphs)), "auto builds one graph twice"
    assert not set(PRESETS) & set(from_cli)
    assert cli_config("quantize", [str(tmp_path), "o"]).variants == DEFAULT_VARIANTS
    assert cli_config("quantize", [str(tmp_path), "o", "--auto", "--variant", "fp16"]).variants == ("fp16",)


def test_presets_resolve_to_the_variant_they_equal(tmp_path):
    for preset, variant in PRESETS.items():
        # Optimum's avx512_vnni and arm64 presets: dynamic u8s8 with per-channel weights, full range.
        spec = VARIANTS[variant]
        assert (spec.kind, spec.per_channel, spec.reduce_range, spec.approximate_gelu) == ("dynamic", True, False,
                                                                                           False), preset
        assert (spec.activation_type, spec.weight_type, spec.nodes_to_exclude) == ("QUInt8", "QInt8", ()), preset
        config = cli_config("quantize", [str(tmp_path), "o", "--variant", preset, "--variant", variant])
        assert config.variants == (variant,)
    assert _graph("avx2") != _graph("dynamic-int8-per-channel"), "avx2 reduces range: a variant of its own"
    listed = CliRunner().invoke(quantize_command, ["--list"]).output
    assert re.search(r"^arm64 .*dynamic-int8-per-channel", listed, re.MULTILINE)
    assert re.search(r"^avx512_vnni .*dynamic-int8-per-channel", listed, re.MULTILINE)
    with pytest.raises(ConfigError, match="--variants: unknown variant 'int3'"):
        cli_config("quantize", [str(tmp_path), "o", "--variant", "int3"])


def test_cli_errors_name_the_flag(tmp_path, data_files):
    argv = ["--train", data_files["train"], "-o", "out"]
    with pytest.raises(ConfigError, match=r"^--lora-r: 0 must be at least 1"):
        cli_config("finetune", [*argv, "--lora-r", "0"])
    with pytest.raises(ConfigError, match=r"^--layers: '0,x': expected whole numbers separated by commas"):
        cli_config("finetune", [*argv, "--layers", "0,x"])
    with pytest.raises(ConfigError, match=r"^--student-num-layers: 0 must be at least 1"):
        cli_config("distill", [*argv, "--teacher", "t", "--student-num-layers", "0"])


# Flags of other programs that edgetune runs (pip, in `edgetune models pull`), not its own.
FOREIGN_FLAGS = {"--no-deps", "--only-binary", "--no-index", "--find-links", "--disable-pip-version-check", "--dest",
                 # scripts/emulate.sh's, named by the toolchain code that runs it
                 "--record", "--exec", "--setup-only", "--targets"}


def _flags_in_source() -> dict[str, str]:
    pattern = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w-])")
    found = {}
    for root in (ROOT / "toolchain" / "edgetune", ROOT / "runtime" / "edgetune_runtime"):
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for flag in pattern.findall(node.value):
                        found.setdefault(flag, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _every_params(command: click.Command) -> list[click.Parameter]:
    """A command's parameters; for a task command, those of every task's flag set."""
    task_params = getattr(command, "task_params", {})
    return [*command.params, *(param for params in task_params.values() for param in params)]


def test_every_flag_named_in_the_source_exists():
    options = {name for group in (cli, runtime_cli) for _, command in _all_commands(group)
               for param in _every_params(command) if isinstance(param, click.Option)
               for name in param.opts + param.secondary_opts} | {"--help"}  # Click's own, on every command
    named = _flags_in_source()
    assert "--texts" in named and "--force" in named, "the scan finds flags in messages"
    unknown = {flag: where for flag, where in named.items() if flag not in options and flag not in FOREIGN_FLAGS}
    assert not unknown, f"messages name flags no command has: {unknown}"


def test_per_class_budget_and_in_graph_tokenizer_from_the_cli_equal_the_recipe(tmp_path, data_files):
    (tmp_path / "model").mkdir()
    loaded = recipe(tmp_path, {"train": data_files["train"]}, {
        "finetune": {}, "export": {},
        "int8": {"stage": "quantize", "max_class_f1_drop": 2.5},
        "bundle": {"tokenizer_in_graph": True},
    })
    paths = [str(tmp_path / "model"), str(tmp_path / "out")]
    quantize = cli_config("quantize", [*paths, "--max-class-f1-drop", "2.5"])
    assert quantize == loaded.stages["int8"].config and quantize.max_class_f1_drop == 2.5
    bundle = cli_config("bundle", [*paths, "--tokenizer-in-graph"])
    assert bundle == loaded.stages["bundle"].config and bundle.tokenizer_in_graph
