"""edgetune: from a labelled text dataset and a pretrained transformer to a measured on-device bundle.

Heavy libraries (torch, transformers, peft, datasets) are imported inside the functions that need
them, so importing this package and running `edgetune --help` stay instant.
"""

__version__ = "0.1.0"
