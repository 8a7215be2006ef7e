"""The dataset flags shared by every command that reads labelled text: generated from `DataConfig`."""

from __future__ import annotations

from edgetune.cli.config_options import ConfigOptions
from edgetune.data.config import DataConfig

DATA_OPTIONS = ConfigOptions(DataConfig)
