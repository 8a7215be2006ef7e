"""Bounds on what a recipe file may make `edgetune validate`/`run` do before its contents are trusted.

Recipes come from other people. YAML aliases let a few hundred bytes stand for billions of nodes ("billion
laughs": each level's anchor used ten times by the next), which anything that walks the document expands.
So a recipe is capped in bytes before parsing, and its composed node graph is measured as it would be
expanded (counted in linear time, each anchored node once) and refused past a bound no real recipe nears.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import ConfigError

MAX_RECIPE_BYTES = 1024 * 1024  # the shipped recipes are 1-3 KB
MAX_EXPANDED_NODES = 100_000  # a recipe with every stage and setting spelled out has a few hundred


def read_recipe_text(path: Path) -> str:
    """The recipe's text, refused in one line when larger than `MAX_RECIPE_BYTES` (read no further than that)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{path}: the recipe is larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe names its "
                          "data files rather than holding data, so check that this is the recipe you meant")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); save the recipe as UTF-8") from None


def check_expansion(root, path: Path) -> None:
    """Refuse a composed YAML document whose alias-expanded node count exceeds `MAX_EXPANDED_NODES`.

    `root` is what `yaml.compose` returned; aliases there are shared node objects, so the expanded size
    is computed bottom-up with each distinct node counted once (memoised by identity). A cycle (an
    anchor used inside itself) expands without end and is refused too.
    """
    import yaml

    if root is None:
        return
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: deep nesting must not hit Python's recursion limit here.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(expanded[id(child)] for child in _children(node))
            if total > MAX_EXPANDED_NODES:
                _refuse(path, f"expands to more than {MAX_EXPANDED_NODES:,} YAML nodes through its aliases")
            expanded[key] = total
            continue
        if key in expanded:
            continue
        if key in on_path:
            _refuse(path, f"uses an alias inside its own anchor (line {node.start_mark.line + 1}), which never ends")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                _refuse(path, f"uses an alias inside its own anchor (line {child.start_mark.line + 1}), "
                              "which never ends")
            if id(child) not in expanded:
                stack.append((child, False))


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse(path: Path, problem: str) -> None:
    raise ConfigError(f"{path}: the recipe {problem}; write the values out instead of nesting aliases (*name)")
