"""`edgetune quantize --target`: variants scored on the CPU the bundle ships to, emulated when it is not this one."""

from __future__ import annotations

import typing

import pytest
from emulation import emulation_unavailable

from edgetune.quantize.config import QuantizeConfig
from edgetune.quantize.run import _choose, _reason, format_quantize_table, quantize
from edgetune.quantize.target import EMULATED_TARGETS, TARGET_CHOICES, emulated_target
from edgetune_runtime.device import describe_machine
from edgetune_runtime.targets import cpu_target


def test_the_config_offers_exactly_the_runtime_targets():
    choices = typing.get_args(typing.get_type_hints(QuantizeConfig)["target"])
    assert choices == TARGET_CHOICES
    host = cpu_target(describe_machine())
    assert emulated_target("host") is None and emulated_target(host) is None
    assert all(emulated_target(target) == target for target in EMULATED_TARGETS if target != host)


def _row(target_drop: float, size_mb: float, p50_ms: float, within_budget: bool = True) -> dict:
    return {"target": "arm64", "emulated": True, "target_texts": 300, "target_accuracy": 0.9 - target_drop / 100,
            "target_accuracy_drop_points": target_drop, "size_mb": size_mb, "p50_ms": p50_ms,
            "within_budget": within_budget, "slower_than_fp32": False}


def test_on_an_emulated_target_accuracy_there_decides_then_size_never_latency():
    config = QuantizeConfig(max_accuracy_drop=0.5)
    rows = {"fp32": _row(0.0, 86.0, 9.0), "dynamic-int8": _row(0.3, 22.0, 1.0),
            "dynamic-int8-per-channel": _row(0.3, 21.0, 5.0), "static-qop-minmax": _row(1.5, 21.0, 0.5, False)}
    # fp32 is the most accurate but not quantised; equal accuracy: the smaller; over budget: never, however small.
    assert _choose(rows, config, emulated=True) == "dynamic-int8-per-channel"
    rows["dynamic-int8"]["target_accuracy_drop_points"] = 0.1
    assert _choose(rows, config, emulated=True) == "dynamic-int8"
    assert _choose({"fp32": rows["fp32"], "static-qop-minmax": rows["static-qop-minmax"]}, config,
                   emulated=True) == "fp32"
    reason = _reason(rows, "dynamic-int8", config)
    assert "emulated arm64" in reason and "Latency under emulation is the emulator's" in reason


def test_the_table_gives_each_variants_accuracy_on_the_target_beside_the_hosts():
    host = {"accuracy": 0.92, "accuracy_drop_points": 0.0, "macro_f1": 0.92, "worst_class_f1_change_points": 0.0,
            "speedup_vs_fp32": 1.0, "p90_ms": 2.0, "classes_losing_over_2_points": []}
    rows = {"fp32": host | _row(0.0, 86.0, 4.0),
            "dynamic-int8": host | _row(0.67, 22.0, 1.0, False) | {"classes_losing_over_2_points": ["card_arrival"]}}
    table = format_quantize_table(rows, "fp32")
    assert "emulated arm64: 90.00% (+0.00 pt)" in table  # no drop is not a negative zero
    assert "1 class loses >2 F1 pt, emulated arm64: 89.33% (-0.67 pt)" in table


@pytest.mark.slow
@pytest.mark.skipif(emulation_unavailable() is not None, reason=str(emulation_unavailable()))
def test_quantize_for_an_emulated_target_scores_every_variant_there(tmp_path, tiny_export_dir):
    target = next(target for target in EMULATED_TARGETS if target != cpu_target(describe_machine()))
    report = quantize(tiny_export_dir, tmp_path / "q", QuantizeConfig(
        variants=("dynamic-int8",), target=target, target_texts=16, latency_texts=5, max_accuracy_drop=100.0))
    for row in report["variants"].values():
        # At most target_texts: the tiny model's validation split has fewer.
        assert row["target"] == target and row["emulated"] and 0 < row["target_texts"] <= 16
        assert 0 <= row["target_accuracy"] <= 1
    assert report["variants"]["fp32"]["target_accuracy_drop_points"] == 0
    assert report["reason"].startswith(f"most accurate quantised variant on an emulated {target} CPU")
