"""The dataset flags shared by every command that reads data: generated from `DataConfig` (labelled text) and
`ChatDataConfig` (conversations)."""

from __future__ import annotations

from edgetune.cli.config_options import ConfigOptions
from edgetune.data.chat_config import ChatDataConfig
from edgetune.data.config import DataConfig

DATA_OPTIONS = ConfigOptions(DataConfig)
CHAT_DATA_OPTIONS = ConfigOptions(ChatDataConfig)
