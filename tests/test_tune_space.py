"""The search space and the tune config are checked before any compute, one line naming the key."""

from __future__ import annotations

import pytest

from edgetune.configuration import build_config
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.tune.config import TuneConfig, parse_pick


def build(values: dict) -> TuneConfig:
    return build_config(TuneConfig, values, "tune")


def lr(**fields) -> dict:
    return {"space": {"learning_rate": {"type": "float", **fields}}}


@pytest.mark.parametrize(("values", "message"), [
    ({"space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3}}}, "tune.space.lr: not a searchable setting"),
    (lr(low=0.0, high=1e-3, log=True), "tune.space.learning_rate.low: 0.0 must be greater than zero on a log scale"),
    (lr(low=1e-3, high=1e-4), "tune.space.learning_rate.low: 0.001 is above high"),
    (lr(low=1e-3), "tune.space.learning_rate.high: float parameters need low and high"),
    (lr(low="fast", high=1e-3), "tune.space.learning_rate.low: expected a number, got 'fast'"),
    ({"space": {"learning_rate": {"type": "gaussian", "low": 1, "high": 2}}}, "tune.space.learning_rate.type"),
    ({"space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "scale": "log"}}},
     "tune.space.learning_rate.scale: unknown key"),
    ({"space": {"batch_size": {"type": "float", "low": 8, "high": 32}}},
     "tune.space.batch_size: batch_size is a whole"),
    ({"space": {"num_layers": {"type": "int", "low": 1.5, "high": 3}}},
     "tune.space.num_layers.low: 1.5 must be a whole"),
    ({"space": {"method": {"type": "float", "low": 0, "high": 1}}}, "tune.space.method: method takes named values"),
    ({"space": {"method": {"type": "categorical", "choices": []}}}, "tune.space.method.choices: a categorical"),
    ({"space": {"method": {"type": "categorical", "choices": ["full", "qlora"]}}},
     "tune.space.method: 'qlora' is refused by training: base.method"),
    ({"space": {"label_smoothing": {"type": "float", "low": 0.0, "high": 1.0}}},
     "tune.space.label_smoothing: 1.0 is refused by training: base.label_smoothing: 1.0 must be in [0, 1)"),
    ({"space": {"temperature": {"type": "float", "low": 1, "high": 4}}},
     "tune.space.temperature: a distillation setting, but no teacher is given"),
    ({"space": {"layers": {"type": "categorical", "choices": ["0,1"]},
                "num_layers": {"type": "int", "low": 1, "high": 2}}}, "tune.space.layers: search layers or num_layers"),
    ({"space": {"layers": {"type": "categorical", "choices": ["0,x"]}}}, "tune.space.layers: '0,x' is refused"),
    ({"space": {"int8_variant": {"type": "categorical", "choices": ["dynamic-int8", "static-qdq-minmax"]}}},
     "tune.space.int8_variant: 'static-qdq-minmax' is not a dynamic int8 variant; choose from dynamic-int8,"),
    ({"space": {"int8_variant": {"type": "int", "low": 0, "high": 1}}},
     "tune.space.int8_variant: int8_variant takes named values"),
    ({"transfer_text": "more.txt"}, "tune.transfer_text: the teacher labels transfer text, but no teacher"),
    ({"pick": "fastest 3"}, "tune.pick: 'fastest 3' is not a rule"),
    ({"mode": "single"}, "tune.mode: single needs a constraint"),
    ({"max_latency_ms": 2.0}, "tune.max_latency_ms: constraints belong to mode single"),
    ({"trials": 0}, "tune.trials: 0 must be at least 1"),
    ({"trials": None}, "tune.trials: no budget"),
    ({"timeout_s": -1.0}, "tune.timeout_s: -1.0 must be greater than zero"),
])
def test_bad_space_or_config_is_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        build(values)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_good_space_builds_and_defaults_apply():
    config = build({"space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                              "num_layers": {"type": "int", "low": 1, "high": 2},
                              "lora.r": {"type": "categorical", "choices": [4, 8]},
                              "method": {"type": "categorical", "choices": ["full", "lora"]}},
                    "trials": 4})
    assert config.space["num_layers"].low == 1 and isinstance(config.space["num_layers"].high, int)
    assert build({"trials": 2}).space.keys() == {"learning_rate", "warmup_ratio", "label_smoothing"}


def test_trial_config_applies_drawn_values_through_the_training_config():
    from edgetune.tune.trial_config import trial_training_config

    config = build({"space": {"layers": {"type": "categorical", "choices": ["0,2", "1"]},
                              "lora.r": {"type": "int", "low": 2, "high": 8}}, "trials": 2})
    trained = trial_training_config(config, {"layers": "2,0", "lora.r": 4})
    assert trained.layers == (0, 2) and trained.lora.r == 4 and trained.num_layers is None


def test_int8_variant_is_a_quantisation_choice_not_a_training_setting():
    from edgetune.tune.trial_config import trial_training_config

    config = build({"space": {"int8_variant": {"type": "categorical", "choices": ["dynamic-int8", "avx512_vnni"]}},
                    "trials": 2})
    trained = trial_training_config(config, {"int8_variant": "avx512_vnni"})
    assert trained == trial_training_config(config, {})


def test_distillation_settings_need_a_teacher_and_reach_the_distill_config(tmp_path):
    from edgetune.distill.config import DistillConfig
    from edgetune.tune.trial_config import trial_training_config

    config = build({"teacher": str(tmp_path), "trials": 2,
                    "space": {"temperature": {"type": "float", "low": 1.0, "high": 4.0},
                              "alpha": {"type": "float", "low": 0.2, "high": 0.8},
                              "augment_copies": {"type": "int", "low": 0, "high": 2}}})
    trained = trial_training_config(config, {"temperature": 3.0, "alpha": 0.7, "augment_copies": 2})
    assert isinstance(trained, DistillConfig) and trained.temperature == 3.0 and trained.alpha == 0.7
    assert trained.augment_copies == 2 and trained.transfer_text is None
    with_transfer = build({"teacher": str(tmp_path), "trials": 2, "transfer_text": "unlabelled.txt"})
    assert trial_training_config(with_transfer, {}).transfer_text == "unlabelled.txt"
    with pytest.raises(ConfigError, match=r"tune.space.alpha: 1.5 is refused by training: distill.alpha"):
        build({"teacher": str(tmp_path), "trials": 2, "space": {"alpha": {"type": "float", "low": 0.2, "high": 1.5}}})
    with pytest.raises(ConfigError, match=r"tune.space.augment_copies: -1 is refused by training: distill.augment"):
        build({"teacher": str(tmp_path), "trials": 2,
               "space": {"augment_copies": {"type": "int", "low": -1, "high": 1}}})


@pytest.mark.parametrize(("text", "kind", "value", "unit"), [
    ("fastest-within 0.5", "fastest-within", 0.5, "points"),
    ("most-accurate-under 2ms", "most-accurate-under", 2.0, "ms"),
    ("most-accurate-under 30 MB", "most-accurate-under", 30.0, "mb"),
    ("most-accurate", "most-accurate", None, None),
])
def test_pick_rules_parse(text, kind, value, unit):
    rule = parse_pick(text)
    assert (rule.kind, rule.value, rule.unit) == (kind, value, unit)


def test_pick_chooses_by_the_rule():
    from edgetune.tune.result import pick_trial

    def row(number, accuracy, p50_ms, size_mb=10.0, state="complete", feasible=True):
        return {"number": number, "state": state, "accuracy": accuracy, "macro_f1": accuracy, "p50_ms": p50_ms,
                "size_mb": size_mb, "feasible": feasible}

    rows = [row(0, 0.90, 4.0), row(1, 0.897, 2.5), row(2, 0.85, 1.0), row(3, 0.95, 0.5, state="pruned"),
            row(4, 0.99, 0.4, feasible=False)]
    assert pick_trial(rows, parse_pick("fastest-within 0.5"), "accuracy")[0]["number"] == 1
    assert pick_trial(rows, parse_pick("most-accurate-under 2ms"), "accuracy")[0]["number"] == 2
    assert pick_trial(rows, parse_pick("most-accurate"), "accuracy")[0]["number"] == 0
    with pytest.raises(EdgetuneError, match="no trial is that fast"):
        pick_trial(rows, parse_pick("most-accurate-under 0.1ms"), "accuracy")


def test_multi_mode_stops_only_trials_far_below_the_best_at_the_same_epoch():
    import optuna
    from optuna.distributions import FloatDistribution

    from edgetune.tune.search import hopeless

    study = optuna.create_study(directions=["maximize", "minimize"])
    for curve in ([0.40, 0.80], [0.30, 0.60]):
        study.add_trial(optuna.trial.create_trial(
            values=[curve[-1], 1.0], params={"learning_rate": 1e-3},
            distributions={"learning_rate": FloatDistribution(1e-4, 1e-2)}, user_attrs={"epoch_metric": curve}))
    config = build({"trials": 4, "prune_margin": 20.0})
    assert hopeless(study, 1, 0.25, config) is None          # 15 points below the best at epoch 1 (0.40)
    assert "more than 20 points below the best trial's 0.8000" in hopeless(study, 2, 0.55, config)
    assert hopeless(study, 3, 0.01, config) is None          # no finished trial ran a third epoch
