"""A chat recipe's `data:`: the chat data settings, with local paths made absolute and fingerprinted."""

from __future__ import annotations

import dataclasses

from edgetune.data.chat_config import ChatDataConfig
from edgetune.recipes.data_source import ResolvedData, files_resolved, local_data_files


def resolve_chat_data(data: ChatDataConfig, *, check_hub: bool = True) -> ResolvedData:
    """The files must exist here (chat data has no hub fallback yet); the fingerprint covers their bytes and
    absolute paths, since later stages re-read the data from the paths the fine-tune recorded."""
    paths = local_data_files(data)
    return files_resolved(dataclasses.replace(data, **paths), paths)
