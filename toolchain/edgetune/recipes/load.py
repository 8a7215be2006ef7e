"""YAML recipe -> typed `Recipe`, with every problem reported at its YAML path (and line).

Checks here are about the recipe's shape and values; whether its files and models exist is
checked by `edgetune.recipes.check`. `--set a.b=c` overrides are applied to the parsed mapping
before validation, with values read as YAML scalars (`3` is a number, `true` a boolean).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgetune.configuration import build_config
from edgetune.errors import ConfigError
from edgetune.recipes.schema import INPUT_KEY, STAGE_KEY, Recipe, RecipeStage, ReportSettings
from edgetune.recipes.stages import StageSpec, stages_for
from edgetune.recipes.tasks import RECIPE_TASKS, recipe_task
from edgetune.recipes.yaml_limits import check_expansion, read_recipe_text

TOP_LEVEL_KEYS = ("name", "description", "task", "data", "stages", "report", "run_dir")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # it names a directory


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read, override and validate the recipe at `path`; raise `ConfigError` naming file, line and key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found; pass the path of a .yaml recipe (see recipes/)")
    text = read_recipe_text(path)  # bounded before parsing
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
        check_expansion(document, path)  # before anything walks the aliases
        lines = _key_lines(document, path)
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: the recipe nests too deeply for YAML to read; a recipe is a few levels of "
                          "keys, so check that this is the recipe you meant") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}); check the indentation and quoting there") from None
    overridden = set()
    for override in overrides:
        overridden.add(apply_override(raw, override))
    try:
        recipe = recipe_from_mapping(raw, source=path)
    except ConfigError as error:
        raise ConfigError(locate(str(error), path, lines, overridden)) from None
    recipe.key_lines, recipe.overridden = lines, overridden
    return recipe


def apply_override(raw: Any, override: str) -> str:
    """Set `a.b.c=value` in the recipe mapping; returns the dotted key it set."""
    import yaml

    key, separator, value_text = override.partition("=")
    key = key.strip()
    if not separator or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. stages.finetune.epochs=3")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text  # not YAML (an unbalanced quote, say): keep the text as typed
    if not isinstance(raw, dict):
        raise ConfigError(f"--set {key}: the recipe is not a mapping of keys")
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            if depth == 1 and parts[0] == "stages":
                stages = ", ".join(node) or "none"
                raise ConfigError(f"--set {key}: the recipe has no stage {part!r} (its stages: {stages})")
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])} is a value, not a mapping of keys")
        node = child
    node[parts[-1]] = value
    return key


def recipe_from_mapping(raw: Any, source: Path | None = None) -> Recipe:
    """Validate a parsed recipe; errors start with the dotted path of the offending key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("recipe: expected a mapping with at least `data:` and `stages:`")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; valid top-level keys are {', '.join(TOP_LEVEL_KEYS)}")
    name = raw.get("name", source.stem if source else None)
    if not isinstance(name, str) or not _STAGE_NAME.match(name):
        raise ConfigError(f"name: {name!r} must be a word of letters, digits, '-' or '_' (it names the run directory)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"description: expected text, got {description!r}")
    run_dir = raw.get("run_dir")
    if run_dir is not None and not isinstance(run_dir, str):
        raise ConfigError(f"run_dir: expected a path, got {run_dir!r}")
    task = _task(raw.get("task", "text-classification"))
    if raw.get("data") is None:
        raise ConfigError("data: required key is missing (the training data: `train:` file and/or `hub:` id)")
    data = build_config(recipe_task(task).load("data_class"), _mapping(raw["data"], "data"), "data")
    report = build_config(ReportSettings, _mapping(raw.get("report"), "report"), "report")
    stages = _stages(raw.get("stages"), stages_for(task))
    return Recipe(name=name, description=description, data=data, stages=stages, report=report, task=task,
                  source=source, run_dir=run_dir, raw=dict(raw))


def _task(value: Any) -> str:
    from edgetune.cli.task_options import TASK_ALIASES, canonical_task

    names = sorted({*RECIPE_TASKS, *(alias for alias, task in TASK_ALIASES.items() if task in RECIPE_TASKS)})
    if not isinstance(value, str) or canonical_task(value) not in RECIPE_TASKS:
        raise ConfigError(f"task: {value!r} is not a task edgetune runs; use one of {', '.join(names)}")
    return canonical_task(value)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(value).__name__} {value!r}")
    return dict(value)


def _stages(raw: Any, table: dict[str, StageSpec]) -> dict[str, RecipeStage]:
    entries = _mapping(raw, "stages")
    if not entries:
        raise ConfigError("stages: required key is missing or empty; list the stages to run, e.g. finetune, export")
    known = ", ".join(table)
    stages: dict[str, RecipeStage] = {}
    for name, entry in entries.items():
        where = f"stages.{name}"
        if not isinstance(name, str) or not _STAGE_NAME.match(name):
            raise ConfigError(f"{where}: a stage name must be letters, digits, '-' or '_' (it names a directory)")
        settings = _mapping(entry, where)
        kind = settings.pop(STAGE_KEY, name)
        spec = table.get(kind)
        if spec is None:
            target = f"{where}.{STAGE_KEY}" if kind != name else where
            raise ConfigError(f"{target}: unknown stage {kind!r}; stages are {known} "
                              f"(name the entry after one, or add `{STAGE_KEY}: <one of them>`)")
        input_name = _input_of(name, spec, settings.pop(INPUT_KEY, None), stages, where, table)
        references = {}
        for field_name, artifact in spec.reference_fields.items():
            value = settings.get(field_name)
            if isinstance(value, str) and value in stages:
                _check_artifact(stages[value], artifact, f"{where}.{field_name}", table)
                references[field_name] = value
        config = build_config(spec.config_class, settings, where)
        stages[name] = RecipeStage(name, kind, input_name, config, references)
    return stages


def _input_of(name: str, spec, given: Any, earlier: dict[str, RecipeStage], where: str,
              table: dict[str, StageSpec]) -> str | None:
    if spec.reads == "data":
        if given is not None:
            raise ConfigError(f"{where}.{INPUT_KEY}: {spec.kind} reads the recipe's data, not another stage; "
                              "remove this key")
        return None
    if given is None:
        # The nearest earlier stage that makes what this one reads, so a straight pipeline needs no inputs.
        candidates = [stage for stage in earlier.values() if table[stage.kind].makes == spec.reads]
        if not candidates:
            raise ConfigError(f"{where}: {spec.kind} reads a {spec.reads} artifact and no earlier stage makes one; "
                              f"add a stage that does before it")
        return candidates[-1].name
    if not isinstance(given, str) or given not in earlier:
        names = ", ".join(earlier) or "none"
        raise ConfigError(f"{where}.{INPUT_KEY}: {given!r} is not an earlier stage (earlier stages: {names})")
    _check_artifact(earlier[given], spec.reads, f"{where}.{INPUT_KEY}", table)
    return given


def _check_artifact(stage: RecipeStage, wanted: str, where: str, table: dict[str, StageSpec]) -> None:
    makes = table[stage.kind].makes
    if makes != wanted:
        raise ConfigError(f"{where}: stage {stage.name!r} ({stage.kind}) makes a {makes} artifact, "
                          f"but a {wanted} is needed here")


def _key_lines(node, path: Path) -> dict[str, int]:
    """Dotted key -> 1-based line in the YAML file; refuses duplicate keys, which YAML would silently merge."""
    import yaml

    lines: dict[str, int] = {}

    def walk(current, prefix: str) -> None:
        if isinstance(current, yaml.MappingNode):
            seen = set()
            for key_node, value_node in current.value:
                key = str(key_node.value)
                if key == "<<":  # a merge key pulls in an anchor's keys; index those under this prefix
                    walk(value_node, prefix)
                    continue
                dotted = f"{prefix}.{key}" if prefix else key
                if dotted in seen:
                    raise ConfigError(f"{path}, line {key_node.start_mark.line + 1}: {dotted}: duplicate key; "
                                      "keep one of them")
                seen.add(dotted)
                lines[dotted] = key_node.start_mark.line + 1
                walk(value_node, dotted)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, f"{prefix}[{index}]")

    if node is not None:
        walk(node, "")
    return lines


def locate(message: str, path: Path, lines: dict[str, int], overridden: set[str]) -> str:
    """Prefix an error that starts with a dotted key with the file and the line of that key."""
    key = message.split(":", 1)[0]
    if key in overridden or any(key.startswith(f"{done}.") for done in overridden):
        return f"{path} (with --set): {message}"
    while key:
        if key in lines:
            return f"{path}, line {lines[key]}: {message}"
        key = key[:key.rindex("[")] if key.endswith("]") else key.rpartition(".")[0]
    return f"{path}: {message}"
