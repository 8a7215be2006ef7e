"""Labelled text data: reading files or hub datasets, validating them, splitting and reporting.

Kept import-free on purpose: the CLI imports `edgetune.data.config` for `--help`, and that must
not pull in pandas.
"""
