"""A chat recipe's `data:`: the chat data settings, with local paths made absolute and fingerprinted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgetune.configuration import config_to_dict
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import ConfigError
from edgetune.recipes.data_source import ResolvedData
from edgetune_runtime.hashing import sha256_file, sha256_json


def resolve_chat_data(data: ChatDataConfig, *, check_hub: bool = True) -> ResolvedData:
    """The files must exist here (chat data has no hub fallback yet); the fingerprint covers their bytes and
    absolute paths, since later stages re-read the data from the paths the fine-tune recorded."""
    paths = {}
    for key in ("train", "validation", "test"):
        value = getattr(data, key)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.{key}: file {value} not found (relative paths are read from {Path.cwd()}); "
                              "fix the path or remove the key")
        paths[key] = str(path.resolve())
    config = dataclasses.replace(data, **paths)
    fingerprint = sha256_json({"config": config_to_dict(config),
                               "files": {key: sha256_file(path) for key, path in paths.items()}})
    return ResolvedData(config, "files", ", ".join(f"{key} {path}" for key, path in paths.items()), fingerprint)
