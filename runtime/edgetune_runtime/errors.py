"""Errors the runtime raises for a bundle it will not run."""


class BundleError(Exception):
    """The bundle is malformed, tampered with, unsafe or newer than this runtime: the message names the problem."""
