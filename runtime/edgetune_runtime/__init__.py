"""edgetune_runtime: the on-device side of edgetune.

Loads and verifies model bundles, predicts and benchmarks on the device. It depends on
onnxruntime, numpy and tokenizers only, so it can ship inside an app; it never imports torch.
"""

__version__ = "0.1.0"

# Bundles carry this number in their manifest; a runtime refuses bundles newer than it knows.
BUNDLE_FORMAT_VERSION = 2
