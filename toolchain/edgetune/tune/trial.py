"""One trial of `edgetune tune`: train with the drawn settings, export, quantise to int8, bundle, time.

Every step is the library function its own command runs (`finetune`/`distill`, `export_onnx`,
`quantize`, `build_bundle`), and the latency is the runtime's batch-1 p50 on this machine
(`edgetune_runtime.latency.time_batch1`), so a trial's point is measured, never estimated.
The data config a trial trains with has no test split, so nothing downstream can read one.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetune.data.config import DataConfig
from edgetune.tune.config import TuneConfig
from edgetune.tune.trial_config import trial_training_config

log = logging.getLogger(__name__)

MODEL_DIR = "model"
INT8_DIR = "int8"
INT8_VARIANT = "dynamic-int8"  # the int8 graph every CPU runs well, unless the space searches int8_variant
LATENCY_WARMUP = 10


@dataclass
class TrialOutcome:
    """What one trial measured: the int8 model's validation metrics, its latency and size."""

    accuracy: float
    macro_f1: float
    p50_ms: float
    p90_ms: float
    size_mb: float
    epochs_run: float
    directory: str

    def objective(self, name: str) -> float:
        """The metric the search maximises: `accuracy` or `macro_f1` (TuneConfig.objective), a field of this."""
        return getattr(self, name)


def search_data(data_config: DataConfig) -> DataConfig:
    """The data a search may look at: train and validation only. The test split is dropped here, once,
    so no stage a trial runs (training, export parity, quantisation, golden examples) can read it."""
    return dataclasses.replace(data_config, test=None)


def run_trial(data_config: DataConfig, config: TuneConfig, params: dict[str, Any], trial_dir: Path,
              epoch_reporter: Callable[[int, float], None] | None = None) -> TrialOutcome:
    """Train, export, quantise, bundle and time one setting; `epoch_reporter(epoch, metric)` may raise to prune."""
    from edgetune.bundle.build import build_bundle
    from edgetune.bundle.config import BundleConfig
    from edgetune.distill.config import DistillConfig
    from edgetune.export.config import ExportConfig
    from edgetune.export.onnx_export import export_onnx
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.run import quantize
    from edgetune.quantize.variants import resolve_variant

    data_config = search_data(data_config)
    training = trial_training_config(config, params)
    callbacks = [_EpochCallback(epoch_reporter, config.objective)] if epoch_reporter else []
    model_dir, onnx_dir, int8_dir = trial_dir / MODEL_DIR, trial_dir / "onnx", trial_dir / INT8_DIR
    bundle_dir = trial_dir / "bundle"
    trial_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(training, DistillConfig):
        from edgetune.distill.train import distill

        trained = distill(data_config, training, model_dir, force=True, extra_callbacks=callbacks)
    else:
        from edgetune.finetune.train import finetune

        trained = finetune(data_config, training, model_dir, force=True, extra_callbacks=callbacks)
    # Parity on fewer texts than a release export: a trial only needs a correct graph, and time is the budget.
    export_onnx(model_dir, onnx_dir, ExportConfig(parity_texts=64), force=True)
    # No accuracy budget: the trial's objective is the int8 graph's own validation metric, so what int8 costs
    # is measured and ranked, not refused (a 0.6-point drop failed the default trial of the Banking77 search).
    variant = resolve_variant(params.get("int8_variant", INT8_VARIANT))
    report = quantize(onnx_dir, int8_dir, QuantizeConfig(variants=(variant,), keep=variant,
                                                         max_accuracy_drop=100.0, latency_texts=20,
                                                         calibration_samples=1, threads=config.threads), force=True)
    shutil.rmtree(onnx_dir, ignore_errors=True)  # the int8 graph is what ships; the fp32 one is 4x its size
    build_bundle(int8_dir, bundle_dir, BundleConfig(golden_examples=4), force=True)
    p50_ms, p90_ms = time_bundle(bundle_dir, data_config, config)
    shutil.rmtree(bundle_dir, ignore_errors=True)  # rebuilt for the chosen trial only
    int8 = report["variants"][variant]
    return TrialOutcome(accuracy=int8["accuracy"], macro_f1=int8["macro_f1"], p50_ms=p50_ms, p90_ms=p90_ms,
                        size_mb=int8["size_mb"], epochs_run=_epochs_run(trained.output_dir),
                        directory=str(trial_dir))


def time_bundle(bundle_dir: Path, data_config: DataConfig, config: TuneConfig) -> tuple[float, float]:
    """Batch-1 p50 and p90 (ms) of the bundle through the runtime, on validation texts, one call at a time."""
    from edgetune.data.load import load_labelled_data
    from edgetune_runtime.bundle import Bundle
    from edgetune_runtime.latency import time_batch1

    texts = load_labelled_data(search_data(data_config)).validation.texts[: config.latency_texts]
    bundle = Bundle.load(bundle_dir, intra_op_threads=config.threads)
    timings = time_batch1(bundle, texts, warmup=min(LATENCY_WARMUP, len(texts)))
    return timings.percentile_ms(50), timings.percentile_ms(90)


def _epochs_run(model_dir: Path) -> float:
    import json

    manifest = json.loads((model_dir / "edgetune.json").read_text(encoding="utf-8"))
    return float(manifest.get("training", {}).get("epochs_run") or 0.0)


def _epoch_callback_class():
    from transformers import TrainerCallback

    class EpochCallback(TrainerCallback):
        """Hands each epoch's validation metric to the search, which may stop (prune) the trial."""

        def __init__(self, reporter: Callable[[int, float], None], metric: str) -> None:
            self.reporter, self.metric = reporter, metric

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{self.metric}")
            if value is not None:
                self.reporter(max(1, round(state.epoch or 0)), float(value))

    return EpochCallback


def _EpochCallback(reporter: Callable[[int, float], None], metric: str):  # noqa: N802 - builds a callback
    return _epoch_callback_class()(reporter, metric)
