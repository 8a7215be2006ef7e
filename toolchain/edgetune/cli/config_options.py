"""Click options generated from a stage's config dataclass, and the config built back from them.

One flag per field, named after it (`learning_rate` -> `--learning-rate`, `lora.r` -> `--lora-r`), its
help from the field's `setting(help=...)`, its default shown from the field. The parsed values go
through `build_config`, the path a recipe takes, and only the flags the user gave are passed, so the
command line and a recipe with the same settings build equal configs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import click

from edgetune.configuration import ALIASES, HELP, NESTED_ALIASES, build_config
from edgetune.errors import ConfigError


@dataclass(frozen=True)
class ConfigFlag:
    """The command-line face of one (possibly nested) config field."""

    path: tuple[str, ...]
    """Field names from the config class down, e.g. ("lora", "r")."""
    flag: str
    """The flag named after the field: --lora-r."""
    aliases: tuple[str, ...]
    """Other names that set the same field (today's short ones, such as --lr)."""
    annotation: Any
    default: Any
    """The field's default, or dataclasses.MISSING when the field is required."""
    help: str

    @property
    def key(self) -> str:
        """The dotted config key, as a recipe writes it."""
        return ".".join(self.path)

    @property
    def param(self) -> str:
        """The keyword argument Click passes to the command."""
        return self.flag.lstrip("-").replace("-", "_")


def config_flags(config_class: type, unprefixed: tuple[str, ...] = ()) -> list[ConfigFlag]:
    """Every field of `config_class`, nested configs flattened; `unprefixed` nested fields also answer
    to their own names without the prefix (distill's `student.epochs` to `--epochs` as well)."""
    return list(_walk(config_class, (), ("",), {}, set(unprefixed)))


def _walk(config_class: type, path: tuple[str, ...], prefixes: tuple[str, ...],
          extra_aliases: Mapping[str, tuple[str, ...]], unprefixed: set[str]) -> Iterator[ConfigFlag]:
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if not field.init:
            continue
        if HELP not in field.metadata:
            raise TypeError(f"{config_class.__name__}.{field.name}: declare it with setting(..., help=...)")
        name = field.name.replace("_", "-")
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            nested = tuple(f"{prefix}{name}-" for prefix in prefixes)
            if field.name in unprefixed and not path:
                nested += prefixes
            yield from _walk(annotation, (*path, field.name), nested, field.metadata[NESTED_ALIASES], unprefixed)
            continue
        names = [f"--{prefix}{name}" for prefix in prefixes]
        # Short names keep their shortest form only: --lr, not also --student-lr.
        names += [f"--{prefixes[-1]}{alias.lstrip('-')}" for alias in field.metadata[ALIASES]]
        names += extra_aliases.get(field.name, ())
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        yield ConfigFlag((*path, field.name), names[0], tuple(dict.fromkeys(names[1:])), annotation, default,
                         field.metadata[HELP])


def _value_type(annotation: Any) -> Any:
    """`int | None` -> int: None is what an absent flag gives anyway."""
    if get_origin(annotation) in (Union, types.UnionType):
        options = [option for option in get_args(annotation) if option is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported config annotation {annotation!r}: one type or that type | None")
        return options[0]
    return annotation


def click_option(flag: ConfigFlag) -> Callable:
    """The Click option of one field, its default the field's (which the builder leaves out again, so
    the config's own default applies exactly as in a recipe that omits the key)."""
    value_type = _value_type(flag.annotation)
    origin = get_origin(value_type)
    required = flag.default is dataclasses.MISSING
    settings: dict[str, Any] = {"help": flag.help, "required": required,
                                "default": None if required else flag.default,
                                "show_default": not required and flag.default is not None}
    decls = [flag.flag, *flag.aliases]
    if value_type is bool:
        decls = [f"{name}/--no-{name[2:]}" for name in decls]
    elif origin in (tuple, list):
        # Comma-separated and repeatable: `--layers 0,2,4`, `--variant a --variant b`.
        settings["multiple"] = True
        settings["metavar"] = "A,B,..."
        settings["default"] = None
        if settings["show_default"]:
            settings["show_default"] = ",".join(str(item) for item in flag.default)
    else:
        if origin is Literal:
            settings["type"] = click.Choice([str(choice) for choice in get_args(value_type)])
        elif value_type in (int, float, str):
            settings["type"] = value_type
        elif value_type is Path:
            settings["type"] = click.Path()
        else:
            raise TypeError(f"{flag.key}: no command-line form for {value_type!r}")
    return click.option(*decls, flag.param, **settings)


class ConfigOptions:
    """A config class's flags on a command: `@OPTIONS` decorates it, `OPTIONS.build(options)` builds the config."""

    def __init__(self, config_class: type, *, unprefixed: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> None:
        self.config_class = config_class
        self.unprefixed = unprefixed
        self.exclude = exclude
        """Top-level fields with no flag of their own (a mapping such as tune's `space`, which the command
        reads from a file instead); `build` leaves them out, and the caller adds them."""

    @cached_property
    def flags(self) -> list[ConfigFlag]:
        return [flag for flag in config_flags(self.config_class, self.unprefixed) if flag.path[0] not in self.exclude]

    def __call__(self, command: Callable) -> Callable:
        for flag in reversed(self.flags):
            command = click_option(flag)(command)
        return command

    def build(self, options: dict[str, Any], extra: Mapping[str, Any] | None = None) -> Any:
        """Pop this config's values out of a command's keyword arguments and build the validated config;
        `extra` gives values of excluded fields."""
        values: dict[str, Any] = dict(extra or {})
        for flag in self.flags:
            value = options.pop(flag.param)
            if value is None or value == () or value == flag.default:
                continue  # the config's default applies, as in a recipe that leaves the key out
            if isinstance(value, tuple):
                value = ",".join(value)  # build_config reads a comma-separated list, as from --set
            node = values
            for part in flag.path[:-1]:
                node = node.setdefault(part, {})
            node[flag.path[-1]] = value
        where = self.config_class.__name__
        try:
            return build_config(self.config_class, values, where)
        except ConfigError as error:
            raise ConfigError(self._in_flag_terms(str(error), where)) from None

    def _in_flag_terms(self, message: str, where: str) -> str:
        """`FinetuneConfig.lora.r: 0 must ...` -> `--lora-r: 0 must ...`: name what the user typed."""
        message = message.removeprefix(f"{where}.")
        key, separator, rest = message.partition(":")
        by_key = {flag.key: flag.flag for flag in self.flags}
        base = key.split("[", 1)[0]
        if separator and base in by_key:
            return f"{by_key[base]}{key[len(base):]}:{rest}"
        return message
