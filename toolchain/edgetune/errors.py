"""Errors meant for the person running edgetune, as opposed to bugs.

The CLI prints an `EdgetuneError` as one line and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class EdgetuneError(Exception):
    """A user-facing problem: the message says what is wrong, where, and how to fix it."""


class DataError(EdgetuneError):
    """A dataset file or its contents cannot be used."""


class ConfigError(EdgetuneError):
    """A configuration value (CLI option or recipe key) is invalid."""


class ModelNotFoundError(EdgetuneError):
    """A model could not be resolved to local weights."""


class IntegrityError(EdgetuneError):
    """Downloaded or bundled bytes do not match the hash they must have."""
