"""ONNX export with a parity gate on real held-out text, and ONNX Runtime graph optimisation.

Kept import-free on purpose: `edgetune.export.config` must load without torch.
"""
