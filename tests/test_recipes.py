"""Recipes: validation names the YAML path (and line) of each problem; shipped recipes validate;
the stage registry, the CLI commands and the runner agree."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BANKING77, REPO_ROOT
from edgetune.errors import ConfigError
from edgetune.recipes.check import check_recipe
from edgetune.recipes.load import apply_override, load_recipe
from edgetune.recipes.stages import STAGES

RECIPES = REPO_ROOT / "recipes"
SHIPPED = sorted(RECIPES.glob("*.yaml"))


def write_recipe(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def banking77_recipe(stages: str, data: str | None = None) -> str:
    data = data or f"  train: {BANKING77 / 'train.csv'}\n  test: {BANKING77 / 'test.csv'}"
    return f"name: t\ndata:\n{data}\nstages:\n{stages}"


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as caught:
        check_recipe(load_recipe(path, overrides))
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("recipe_path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_every_shipped_recipe_validates_here(recipe_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipes name ../shared/data relative to the repository root
    recipe = load_recipe(recipe_path)
    checked = check_recipe(recipe)
    assert checked.data.origin == "files"  # the local copies win over the hub id
    # SST-2's hub splits do not map onto train/validation/test by name; chat data has no hub fallback yet.
    if recipe_path.name != "sst2.yaml" and recipe.task == "text-classification":
        assert recipe.data.hub, "shipped recipes name their dataset's hub id for networked machines"
    assert recipe.description


def test_the_three_required_recipes_ship():
    assert {"quickstart.yaml", "banking77.yaml", "sst2.yaml"} <= {path.name for path in SHIPPED}


def test_unknown_key_names_path_and_line(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    epochs: 2\n    epoch: 3"))
    message = error_of(path)
    assert message.startswith(f"{path}, line 8: stages.finetune.epoch: unknown key")


def test_wrong_type_names_path_and_line(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    epochs: three"))
    assert error_of(path) == f"{path}, line 7: stages.finetune.epochs: expected a number, got 'three'"


def test_value_check_of_the_stage_config(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    learning_rate: -1"))
    assert "stages.finetune.learning_rate: -1.0 must be greater than zero" in error_of(path)


def test_unknown_top_level_key_and_unknown_stage(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune: {}") + "\nstagez: 1")
    assert "stagez: unknown key" in error_of(path)
    path = write_recipe(tmp_path, banking77_recipe("  finetune: {}\n  prune: {}"))
    message = error_of(path)
    assert "line 7: stages.prune: unknown stage 'prune'" in message and "finetune" in message


def test_missing_data_file_without_hub(tmp_path):
    data = f"  train: {tmp_path / 'nope.csv'}"
    message = error_of(write_recipe(tmp_path, banking77_recipe("  finetune: {}", data)))
    assert "line 3: data.train: file" in message and "no `data.hub`" in message


def test_missing_test_file(tmp_path):
    data = f"  train: {BANKING77 / 'train.csv'}\n  test: {tmp_path / 'missing.csv'}"
    assert "line 4: data.test: file" in error_of(write_recipe(tmp_path, banking77_recipe("  finetune: {}", data)))


def test_hub_fallback_says_when_neither_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    data = f"  train: {tmp_path / 'absent' / 'train.csv'}\n  hub: PolyAI/banking77"
    message = error_of(write_recipe(tmp_path, banking77_recipe("  finetune: {}", data)))
    assert message.startswith(f"{tmp_path / 'recipe.yaml'}, line 4: data.hub:")
    assert "not found" in message and "'PolyAI/banking77' cannot be used" in message


def test_hub_fallback_is_used_when_it_is_reachable(tmp_path, monkeypatch):
    from edgetune.recipes import data_source

    monkeypatch.setattr(data_source, "hub_unreachable_reason", lambda dataset_id: None)  # no network here
    data = f"  train: {tmp_path / 'absent.csv'}\n  hub: PolyAI/banking77"
    checked = check_recipe(load_recipe(write_recipe(tmp_path, banking77_recipe("  finetune: {}", data))))
    assert checked.data.origin == "hub" and checked.data.config.train == "PolyAI/banking77"


def test_missing_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_recipe(tmp_path, banking77_recipe(f"  finetune:\n    model: {tmp_path / 'no-model'}"))
    assert error_of(path).startswith(f"{path}, line 7: stages.finetune.model:")
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    model: someone/not-a-model"))
    message = error_of(path)
    assert "line 7: stages.finetune.model: model 'someone/not-a-model' is not a local path" in message


def test_input_must_be_an_earlier_stage_of_the_right_kind(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune: {}\n  export: {}\n  bundle:\n    input: finetune"))
    assert "stages.bundle.input: stage 'finetune' (finetune) makes a model artifact, but a onnx" in error_of(path)
    path = write_recipe(tmp_path, banking77_recipe("  finetune: {}\n  export:\n    input: later\n  later: {}"))
    assert "stages.export.input: 'later' is not an earlier stage (earlier stages: finetune)" in error_of(path)
    path = write_recipe(tmp_path, banking77_recipe("  export: {}"))
    assert "stages.export: export reads a model artifact and no earlier stage makes one" in error_of(path)


def test_default_input_is_the_nearest_stage_making_what_is_read(tmp_path):
    text = banking77_recipe("  finetune: {}\n  export: {}\n  int8:\n    stage: quantize\n  bundle-fp32:\n"
                            "    stage: bundle\n    input: export\n  bundle: {}")
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert [(s.name, s.kind, s.input) for s in recipe.stages.values()] == [
        ("finetune", "finetune", None), ("export", "export", "finetune"), ("int8", "quantize", "export"),
        ("bundle-fp32", "bundle", "export"), ("bundle", "bundle", "int8")]


def test_duplicate_keys_and_bad_yaml(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    epochs: 1\n    epochs: 2"))
    assert error_of(path) == f"{path}, line 8: stages.finetune.epochs: duplicate key; keep one of them"
    path = write_recipe(tmp_path, banking77_recipe("  finetune: [1, 2"))
    assert "not valid YAML" in error_of(path)


def test_set_overrides_are_yaml_scalars(tmp_path):
    path = write_recipe(tmp_path, banking77_recipe("  finetune:\n    epochs: 2\n  export: {}"))
    recipe = load_recipe(path, ["stages.finetune.epochs=3", "stages.finetune.freeze_embeddings=true",
                                "stages.export.opset=18", "report.threads=2"])
    assert recipe.stages["finetune"].config.epochs == 3.0
    assert recipe.stages["finetune"].config.freeze_embeddings is True
    assert recipe.stages["export"].config.opset == 18 and recipe.report.threads == 2
    assert "(with --set): stages.finetune.epochs: expected a number" in error_of(path, ("stages.finetune.epochs=x",))


def test_set_refuses_unknown_stage_and_malformed_pairs():
    raw = {"stages": {"finetune": {}}}
    with pytest.raises(ConfigError, match="the recipe has no stage 'finetun' \\(its stages: finetune\\)"):
        apply_override(raw, "stages.finetun.epochs=3")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override(raw, "stages.finetune.epochs")


def test_validate_command_prints_plan_and_one_line_errors(tmp_path):
    good = write_recipe(tmp_path, banking77_recipe("  finetune: {}\n  export: {}"), "good.yaml")
    result = subprocess.run([sys.executable, "-m", "edgetune", "validate", str(good)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "valid; stages: finetune -> export" in result.stdout
    bad = write_recipe(tmp_path, banking77_recipe("  finetune:\n    epochs: three"), "bad.yaml")
    result = subprocess.run([sys.executable, "-m", "edgetune", "validate", str(bad)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}, line 7: stages.finetune.epochs: expected a number, got 'three'"]


def test_registry_cli_and_runner_agree():
    """Every registered stage has the CLI command it names, that command calls the same library function
    as the runner, and the runner builds and calls stages only through the registry."""
    from edgetune.cli.main import cli as edgetune_cli
    from edgetune.recipes import load, runner
    from edgetune.tasks.text_generation.stages import CHAT_STAGES
    from edgetune_runtime.cli import main as runtime_cli

    programs = {"edgetune": edgetune_cli, "edgetune-runtime": runtime_cli}
    specs = [*STAGES.items(), *((f"chat {kind}", spec) for kind, spec in CHAT_STAGES.items())]
    for kind, spec in specs:
        command = programs[spec.cli_program].commands.get(spec.cli_command)
        assert command is not None, f"stage {kind}: no `{spec.cli_program} {spec.cli_command}` command"
        module, name = (spec.cli_function or spec.function).split(":")
        imports = re.compile(rf"from {re.escape(module)} import (\w+, )*{name}\b")
        # A task command hands each task to a function of its module (`_EXPORTERS`): search the module.
        source = inspect.getsource(inspect.getmodule(command.callback) if hasattr(command, "task_params")
                                   else command.callback)
        if "task_bench(" in source:  # `edgetune-runtime bench` runs the bench the runtime's task registry names
            from edgetune_runtime.tasks import task_bench

            bench_task = "text-generation" if kind.startswith("chat ") else "text-classification"
            run = task_bench(bench_task).run
            assert (run.__module__, run.__name__) == (module, name), f"{spec.cli_command} does not run {module}.{name}"
        else:
            assert imports.search(source), f"{spec.cli_command} does not call {module}.{name}"
        runner_function = spec.library_function()
        if spec.cli_function:  # the runner's function wraps the one the CLI calls
            assert imports.search(inspect.getsource(runner_function)), f"{spec.function} does not call {name}"
        assert len(inspect.signature(runner_function).parameters) >= 3, kind
    assert "stages_for(" in inspect.getsource(load) and "stages_for(" in inspect.getsource(runner)
