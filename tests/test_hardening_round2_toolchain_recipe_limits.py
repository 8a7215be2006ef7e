"""Hardening round 2: a recipe cannot make `edgetune validate` allocate or spin without bound.

Main walked a recipe's aliases as expanded, so nine levels of ten aliases each (a "billion laughs" of a few
hundred bytes) never finished. Recipes are now capped in bytes before parsing and in alias-expanded nodes
before anything walks them; a cycle or a nesting too deep for YAML is one line too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgetune.errors import ConfigError

EDGETUNE = [sys.executable, "-m", "edgetune"]


def _billion_laughs(levels: int = 9) -> str:
    lines = ['name: laughs', 'l0: &l0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    lines.append(f"stages: {{finetune: {{kind: finetune, notes: *l{levels}}}}}")
    return "\n".join(lines) + "\n"


def _validate(recipe: Path) -> subprocess.CompletedProcess:
    # A timeout, so that main's exponential walk fails this test instead of hanging the suite.
    return subprocess.run([*EDGETUNE, "validate", str(recipe)], capture_output=True, text=True, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, lines
    return lines[0]


def test_billion_laughs_is_refused_at_once_naming_the_file(tmp_path):
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(_billion_laughs(), encoding="utf-8")
    assert recipe.stat().st_size < 1024
    line = _one_error_line(_validate(recipe))
    assert str(recipe) in line and "aliases" in line, line


def test_an_oversized_recipe_is_refused_before_parsing(tmp_path):
    recipe = tmp_path / "huge.yaml"
    recipe.write_text("name: huge\n" + "# padding\n" * 200_000, encoding="utf-8")  # 2 MB of comments
    line = _one_error_line(_validate(recipe))
    assert str(recipe) in line and "larger than 1024 KiB" in line, line


@pytest.mark.parametrize("text, problem", [
    ("a: &a [*a]\n", "alias inside its own anchor"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nests too deeply"),
])
def test_cycles_and_deep_nesting_are_one_line(tmp_path, text, problem):
    from edgetune.recipes.load import load_recipe

    recipe = tmp_path / "odd.yaml"
    recipe.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as raised:
        load_recipe(recipe)
    assert str(recipe) in str(raised.value) and "\n" not in str(raised.value)


def test_modest_aliases_still_work(tmp_path):
    import yaml

    from edgetune.recipes.yaml_limits import check_expansion

    document = yaml.compose(_billion_laughs(levels=3), Loader=yaml.SafeLoader)  # 1,000 laughs: fine
    check_expansion(document, tmp_path / "ok.yaml")
    with pytest.raises(ConfigError, match="more than 100,000 YAML nodes"):
        check_expansion(yaml.compose(_billion_laughs(levels=5), Loader=yaml.SafeLoader), tmp_path / "big.yaml")


def test_the_shipped_recipes_are_far_inside_the_bounds():
    from edgetune.recipes.load import load_recipe

    for recipe in sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml")):
        load_recipe(recipe)
