"""The chat recipe end to end on the tiny Llama: data -> SFT -> export -> int4 -> bundle -> evaluate -> report.

The same runner and stage table as `recipes/support_chat.yaml`, with the tiny model, a few dozen real
Bitext rows and short settings, so the test suite runs a chat recipe whole (issue 16 item 7).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas
import pytest
import yaml

from conftest import BITEXT
from edgetune.recipes.load import load_recipe
from edgetune.recipes.runner import run_recipe
from edgetune.stage_manifest import read_stage_manifest
from edgetune_runtime.bundle import Bundle

pytestmark = [pytest.mark.skipif(not BITEXT.is_file(), reason="shared Bitext data not present"), pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]


def _bitext_rows(path: Path, intents: int = 3, per_intent: int = 12) -> Path:
    """The `per_intent` shortest answers of the first `intents` intents: they fit the tiny model's 512 positions."""
    frame = pandas.read_csv(BITEXT, dtype=str, keep_default_na=False)
    chosen = frame[frame["intent"].isin(frame["intent"].drop_duplicates().head(intents))]
    chosen = chosen.assign(length=chosen["response"].str.len()).sort_values(["intent", "length"], kind="stable")
    chosen.groupby("intent", sort=False).head(per_intent).drop(columns="length").to_csv(path, index=False)
    return path


def test_the_support_chat_recipe_runs_whole_on_a_tiny_model(tmp_path, tiny_chat_dir, tiny_bert_dir):
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "support_chat.yaml").read_text())
    recipe["data"]["train"] = str(_bitext_rows(tmp_path / "bitext.csv"))
    recipe["data"]["test_fraction"] = 0.25
    stages = recipe["stages"]
    assert stages["finetune"]["score_test"] is False  # the evaluate stage scores the test split
    stages["finetune"] |= {"model": str(tiny_chat_dir), "max_steps": 2, "batch_size": 4, "max_length": 512,
                           "eval_steps": 2, "logging_steps": 1}
    stages["export"] |= {"context_length": 512, "parity_prompts": 2, "parity_new_tokens": 8}
    # Random tiny weights make any quality budget arbitrary: a wide one keeps the named variant.
    stages["int4"] |= {"auto": False, "variants": ["int4-block32"], "keep": "int4-block32",
                       "max_quality_drop": 1000.0, "score_prompts": 3, "fidelity_prompts": 0, "timing_prompts": 1,
                       "timing_new_tokens": 4}
    stages["bundle"] |= {"context_length": 512, "golden_examples": 2}
    stages["bench"] |= {"threads": [1], "new_tokens": 4, "prompts_per_length": 1, "quality_rows": 2, "cold_starts": 0}
    stages["evaluate"] |= {"base": str(tiny_chat_dir), "max_new_tokens": 8, "judge_model": str(tiny_bert_dir),
                           "judge_epochs": 1.0, "judge_per_intent": 8}
    path = tmp_path / "support_chat.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))

    result = run_recipe(load_recipe(path), tmp_path / "run")

    assert result.complete
    kinds = ["finetune", "export", "quantize", "bundle", "bench", "evaluate"]
    assert [record.kind for record in result.stages] == kinds
    bundle = Bundle.load(result.run_dir / "latest" / "bundle")
    assert bundle.manifest["task"] == "text-generation"
    assert bundle.verify().passed
    # The card names the pretrained model it was fine-tuned from, not the run's stage directory.
    base_model = read_stage_manifest(result.run_dir / "latest" / "finetune")["base_model"]
    assert bundle.manifest["provenance"]["base_model"] == base_model
    card_title = (result.run_dir / "latest" / "bundle" / "README.md").read_text().splitlines()[0]
    assert card_title == f"# {base_model['name']} — text-generation bundle" and "stages" not in card_title
    scores = json.loads((result.run_dir / "report.json").read_text())["evaluation"]
    assert list(scores["models"]) == ["base", "finetuned-fp32", "finetuned-int4-block32"]
    assert scores["prompts"] == 6  # the recipe's two held-out test prompts per intent
    report = (result.run_dir / "report.md").read_text()
    assert "finetuned-int4-block32 - base" in report and "int4-block32" in report
    assert (result.run_dir / "quality.png").stat().st_size > 1000
    bench = json.loads((result.run_dir / "latest" / "bench" / "bench.json").read_text())
    assert bench["task"] == "text-generation" and bench["runs"][0]["decode_tokens_per_s"] > 0

    again = run_recipe(load_recipe(path), tmp_path / "run")  # every stage is cached the second time
    assert {record.status for record in again.stages} == {"cached"}
