"""Quantisation variants (int8 dynamic/static, fp16, ISA presets), each evaluated, selected under a budget.

Kept import-free on purpose: `edgetune.quantize.config` must load without onnxruntime.
"""
