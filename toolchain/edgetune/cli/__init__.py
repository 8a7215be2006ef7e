"""The `edgetune` command line: thin Click layers over the library's stage functions."""
