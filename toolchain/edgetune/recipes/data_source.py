"""Turn a recipe's `data:` into the `DataConfig` the stages read: local files first, a hub id otherwise.

The same recipe runs unchanged on this offline machine (files under ../shared/data) and on a
networked one without them (the same dataset by hub id). When neither is usable, one line says
what was looked for and how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetune.configuration import config_to_dict
from edgetune.data.config import DataConfig
from edgetune.errors import ConfigError
from edgetune.recipes.schema import RecipeData
from edgetune_runtime.hashing import sha256_file, sha256_json

_OFFLINE_VALUES = ("1", "true", "yes", "on")


@dataclass
class ResolvedData:
    """The data config the stages get, where it came from, and a fingerprint for cache keys."""

    config: Any
    """The task's data config the stages get (`DataConfig` for classification, `ChatDataConfig` for chat)."""
    origin: str
    """`files` or `hub`."""
    description: str
    fingerprint: str


def resolve_data(data: RecipeData, *, check_hub: bool = True) -> ResolvedData:
    """Choose local files or the hub dataset; raise `ConfigError` naming `data.<key>` when neither works.

    The fingerprint covers the files' contents and their absolute paths: later stages re-read the
    data from the paths the fine-tune recorded, so moved files must re-run the stages.
    """
    if data.train and Path(data.train).expanduser().is_file():
        paths = local_data_files(data)
        return files_resolved(_data_config(data, **paths), paths)

    missing = (f"file {data.train} not found (relative paths are read from {Path.cwd()})" if data.train
               else "no training file given")
    if not data.hub:
        raise ConfigError(f"data.train: {missing}, and no `data.hub` dataset id to fall back on; "
                          "fix the path, or add `hub: <dataset id>` for machines with a network")
    if check_hub:
        problem = hub_unreachable_reason(data.hub)
        if problem:
            raise ConfigError(f"data.hub: {missing}, and hub dataset {data.hub!r} cannot be used: {problem}; "
                              "put the files at the data paths, or run where the dataset hub is reachable")
    # The hub dataset brings its own splits (validation carved from train when it has none).
    config = _data_config(data, train=data.hub)
    return ResolvedData(config, "hub", f"hub dataset {data.hub}", sha256_json({"config": config_to_dict(config)}))


def local_data_files(data) -> dict[str, str]:
    """Absolute paths of the `train`/`validation`/`test` files `data` names; a missing one is a `ConfigError`."""
    paths = {}
    for key in ("train", "validation", "test"):
        value = getattr(data, key)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.{key}: file {value} not found (relative paths are read from "
                              f"{Path.cwd()}); fix the path or remove the key")
        paths[key] = str(path.resolve())
    return paths


def files_resolved(config, paths: dict[str, str]) -> ResolvedData:
    """`config` read from local `paths`, fingerprinted by its settings and the files' bytes."""
    fingerprint = sha256_json({"config": config_to_dict(config),
                               "files": {key: sha256_file(path) for key, path in paths.items()}})
    return ResolvedData(config, "files", ", ".join(f"{key} {path}" for key, path in paths.items()), fingerprint)


def _data_config(data: RecipeData, **splits: str) -> DataConfig:
    return DataConfig(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                      text_column=data.text_column, label_column=data.label_column,
                      validation_fraction=data.validation_fraction, split_seed=data.split_seed)


def hub_unreachable_reason(dataset_id: str) -> str | None:
    """Why `dataset_id` cannot be loaded from the hub here, or None when it can (or is cached)."""
    if _datasets_cache_has(dataset_id):
        return None
    for variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in _OFFLINE_VALUES:
            return f"{variable} is set and it is not in the datasets cache"
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(dataset_id, timeout=10)
    except Exception as error:  # noqa: BLE001 - offline, unknown or private datasets all end here
        first_line = str(error).splitlines()[0][:120] if str(error) else ""
        return f"the hub did not answer ({type(error).__name__}{': ' + first_line if first_line else ''})"
    return None


def _datasets_cache_has(dataset_id: str) -> bool:
    cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface"))
                 .expanduser() / "datasets")
    folded = dataset_id.replace("/", "___")
    return cache.is_dir() and any(cache.glob(f"{folded}*"))

