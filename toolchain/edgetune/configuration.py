"""Build typed stage configs (dataclasses) from plain mappings, such as a recipe's YAML.

Every problem names the dotted path of the offending key (`finetune.lora.r`), so a recipe can be
fixed without reading code. Field checks that go beyond types live in each config's
`__post_init__`, which raises `ConfigError` too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from edgetune.errors import ConfigError

ConfigT = TypeVar("ConfigT")

HELP = "help"
ALIASES = "aliases"
NESTED_ALIASES = "nested_aliases"


def setting(default: Any = dataclasses.MISSING, *, help: str, aliases: tuple[str, ...] = (),  # noqa: A002
            default_factory: Any = dataclasses.MISSING,
            nested_aliases: Mapping[str, tuple[str, ...]] | None = None) -> Any:
    """A config field with its one help text, shared by recipes' docs and the generated CLI flag.

    `aliases` are extra flag names kept for the command line (`--lr` for `learning_rate`);
    `nested_aliases` gives flag aliases to fields of a nested config (`{"model": ("--student",)}`).
    """
    metadata = {HELP: help, ALIASES: tuple(aliases), NESTED_ALIASES: dict(nested_aliases or {})}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def build_config(config_class: type[ConfigT], values: Mapping[str, Any] | None, where: str) -> ConfigT:
    """Instantiate `config_class` from `values`, rejecting unknown keys and wrong types."""
    values = dict(values or {})
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    hints = typing.get_type_hints(config_class)
    fields = {field.name: field for field in dataclasses.fields(config_class) if field.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; valid keys are {', '.join(sorted(fields))}"
        )
    converted = {}
    for name, raw in values.items():
        converted[name] = _convert(raw, hints[name], f"{where}.{name}")
    missing = [
        name for name, field in fields.items()
        if name not in converted
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key is missing")
    try:
        return config_class(**converted)
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(where) else f"{where}.{message}") from None


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _convert(raw: Any, annotation: Any, where: str) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if raw is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(raw, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {raw!r} matches none of the allowed types")
    if origin is Literal:
        choices = get_args(annotation)
        if raw not in choices:
            raise ConfigError(f"{where}: {raw!r} is not {_type_name(annotation)}")
        return raw
    if origin in (tuple, list):
        (item_type, *_rest) = get_args(annotation) or (Any,)
        if isinstance(raw, str):
            # `0,2,4`: how a list arrives from a command-line flag or a `--set` override.
            raw = _split_list(raw, item_type, where)
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(raw).__name__} {raw!r}")
        items = [_convert(item, item_type, f"{where}[{index}]") for index, item in enumerate(raw)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        # A mapping with named entries, such as tune's search space (`space.learning_rate: {...}`).
        (_key_type, value_type) = get_args(annotation) or (str, Any)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
        return {str(key): _convert(value, value_type, f"{where}.{key}") for key, value in raw.items()}
    if dataclasses.is_dataclass(annotation):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
        return build_config(annotation, raw, where)
    if annotation is Any:
        return raw
    if annotation is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if annotation is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{where}: expected a whole number, got {raw!r}")
        return raw
    if annotation is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {raw!r}")
        return float(raw)
    if annotation is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected text, got {raw!r}")
        return raw
    if annotation is Path:
        if not isinstance(raw, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {raw!r}")
        return Path(raw)
    raise TypeError(f"{where}: unsupported config annotation {annotation!r}")


def _split_list(text: str, item_type: Any, where: str) -> list:
    """`a, b` -> ["a", "b"]; numbers are read as numbers for a list of numbers."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if item_type not in (int, float):
        return parts
    try:
        return [item_type(part) for part in parts]
    except ValueError:
        kind = "whole numbers" if item_type is int else "numbers"
        raise ConfigError(f"{where}: {text!r}: expected {kind} separated by commas, such as 0,2,4") from None


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a config dataclass (paths as strings), for manifests and caching keys."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)
