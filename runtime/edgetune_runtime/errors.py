"""Errors the runtime raises for a bundle it will not run or an input it cannot read.

Both are user mistakes: the CLI prints them as one `error:` line and exits with status 2.
"""


class BundleError(Exception):
    """The bundle is malformed, tampered with, unsafe or newer than this runtime: the message names the problem."""


class InputError(Exception):
    """A texts file, a benchmark setting or an option cannot be used: the message names the file, row or option."""
