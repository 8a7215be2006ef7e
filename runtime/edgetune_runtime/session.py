"""How a bundle's ONNX Runtime session is configured: threads, providers and any other session option."""

from __future__ import annotations

from pathlib import Path

from edgetune_runtime.errors import BundleError, InputError

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def create_session(model: Path | bytes, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
                   providers: list[str] | tuple[str, ...] | None = None, session_options=None,
                   tuning: dict | None = None):
    """An `onnxruntime.InferenceSession` for `model`.

    `intra_op_threads` 0 lets ONNX Runtime choose (one per physical core); `session_options`, an
    `onnxruntime.SessionOptions`, carries anything else (spinning, memory arena, profiling) and is
    used as given except for thread counts passed explicitly here. `tuning` is the bundle manifest's
    `session` entry: graph optimisers to turn off and session config entries, chosen by the toolchain
    because they measured faster for this graph (see `apply_session_tuning`).
    """
    import onnxruntime

    for name, value in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name}: {value!r} must be a whole number >= 0 (0 lets ONNX Runtime choose)")
    providers = list(providers or DEFAULT_PROVIDERS)
    unknown = [name for name in providers if name not in onnxruntime.get_available_providers()]
    if unknown:
        raise InputError(f"execution provider {unknown[0]!r} is not available in this onnxruntime build "
                         f"(available: {', '.join(onnxruntime.get_available_providers())})")
    options = session_options if session_options is not None else onnxruntime.SessionOptions()
    if session_options is None:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads or session_options is None:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads or session_options is None:
        options.inter_op_num_threads = inter_op_threads
    disabled_optimizers = apply_session_tuning(options, tuning or {})
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=providers, disabled_optimizers=disabled_optimizers)


def apply_session_tuning(options, tuning: dict) -> list[str]:
    """Set `tuning["config_entries"]` on `options`; return `tuning["disabled_optimizers"]`.

    Both are plain data in the manifest, so a bundle tuned by the toolchain runs the same way on
    every device without code changes here.
    """
    disabled = tuning.get("disabled_optimizers", [])
    entries = tuning.get("config_entries", {})
    if not isinstance(disabled, list) or not all(isinstance(name, str) for name in disabled):
        raise InputError(f"session.disabled_optimizers: {disabled!r} must be a list of optimiser names")
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise InputError(f"session.config_entries: {entries!r} must map config keys to string values")
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return list(disabled)


def load_failure(path: Path, error: Exception, what: str = "the model") -> BundleError | None:
    """One line for a sealed graph ONNX Runtime cannot load (built wrong, or re-sealed by hand); None for an error
    that is not ONNX Runtime's, to be raised as it is. ONNX Runtime's own exception types all derive from
    Exception, so they are told apart by module."""
    if not type(error).__module__.startswith("onnxruntime"):
        return None
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return BundleError(f"{path}: ONNX Runtime cannot load {what} ({first_line})")
