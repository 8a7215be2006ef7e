"""Typed configs from mappings: unknown keys, wrong types and bad values name their dotted path."""

from __future__ import annotations

import pytest

from edgetune.configuration import build_config, config_to_dict
from edgetune.errors import ConfigError
from edgetune.finetune.config import FinetuneConfig


def test_valid_mapping_builds_nested_config():
    config = build_config(FinetuneConfig, {"method": "lora", "epochs": 2, "lora": {"r": 4, "target_modules": ["q"]}},
                          "finetune")
    assert config.method == "lora" and config.epochs == 2.0 and config.lora.r == 4
    assert config.lora.target_modules == ("q",)
    assert config_to_dict(config)["lora"]["target_modules"] == ["q"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epocs": 3}, r"finetune\.epocs: unknown key"),
        ({"epochs": "three"}, r"finetune\.epochs: expected a number"),
        ({"batch_size": 3.5}, r"finetune\.batch_size: expected a whole number"),
        ({"method": "qlora"}, r"finetune\.method: 'qlora' is not one of 'full', 'lora'"),
        ({"freeze_embeddings": "yes"}, r"finetune\.freeze_embeddings: expected true or false"),
        ({"lora": {"rank": 4}}, r"finetune\.lora\.rank: unknown key"),
        ({"lora": {"r": 0}}, r"finetune\.lora\.r: 0 must be at least 1"),
        ({"learning_rate": -1}, r"finetune\.learning_rate: -1.0 must be greater than zero"),
        ({"lora": {"target_modules": 3}}, r"finetune\.lora\.target_modules: expected a list"),
        ({"layers": "0,two"}, r"finetune\.layers: .0,two.: expected whole numbers separated by commas"),
    ],
)
def test_bad_values_name_their_path(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(FinetuneConfig, values, "finetune")


def test_a_list_may_be_written_as_comma_separated_text():
    # How a list arrives from a flag (`--layers 4,0,2`) or a `--set` override.
    config = build_config(FinetuneConfig, {"layers": "4, 0,2", "lora": {"target_modules": "query,value"}}, "finetune")
    assert config.layers == (0, 2, 4) and config.lora.target_modules == ("query", "value")


def test_a_data_config_recorded_before_split_seed_was_named_still_loads():
    from edgetune.data.config import DataConfig

    recorded = {"train": "train.csv", "validation_fraction": 0.2, "seed": 7}
    assert DataConfig.from_recorded(recorded) == DataConfig(train="train.csv", validation_fraction=0.2, split_seed=7)
    assert DataConfig.from_recorded({"train": "t.csv", "split_seed": 3}).split_seed == 3
