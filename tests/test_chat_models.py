"""SmolLM2's Q4_1 GGUF as a Hugging Face directory: de-quantised once, with the original tokenizer's ids.

The ids pinned here are SmolLM2-135M-Instruct's own (its tokenizer.json): `Hello world` is [19556, 905]
with no BOS, `<|im_start|>` is 1 and `<|im_end|>` (end of turn, end of sequence, padding) is 2. The
tokenizer transformers derives from the GGUF gets several wrong (see `edgetune.models.gguf_dir`).
"""

from __future__ import annotations

import json

import pytest

from edgetune.models.cache import cache_root
from edgetune.models.registry import find_packaged_model

SMOLLM2 = find_packaged_model("HuggingFaceTB/SmolLM2-135M-Instruct")
GGUF = cache_root() / "models" / SMOLLM2.cache_name / SMOLLM2.weights_file

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not GGUF.is_file(), reason="SmolLM2's GGUF is not cached (edgetune models pull)")]


@pytest.fixture(scope="module")
def smollm2_dir():
    from edgetune.models.gguf_dir import resolve_model_directory

    return resolve_model_directory("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_the_converted_directory_is_a_plain_hugging_face_model(smollm2_dir):
    directory = smollm2_dir.path
    assert smollm2_dir.gguf_file is None and smollm2_dir.weights_sha256 == SMOLLM2.weights_sha256
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (directory / name).is_file(), name
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["eos_token_id"] == 2
    assert json.loads((directory / "generation_config.json").read_text())["eos_token_id"] == 2
    # The chat template sits in tokenizer_config.json, where the builder and the bundle read it.
    assert "<|im_start|>" in json.loads((directory / "tokenizer_config.json").read_text())["chat_template"]


def test_tokenizer_ids_match_the_original_smollm2(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir.path)
    assert tokenizer("Hello world").input_ids == [19556, 905]  # no BOS prepended
    assert tokenizer.eos_token_id == 2 and tokenizer.pad_token_id == 2
    assert tokenizer.convert_ids_to_tokens([1, 2]) == ["<|im_start|>", "<|im_end|>"]
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert ids[0] == 1 and ids[1] != 1  # the template's own <|im_start|>, no BOS before it
    assert tokenizer.decode(ids).endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert ids[-4:] == tokenizer("<|im_start|>assistant\n").input_ids == [1, 520, 9531, 198]
    assert tokenizer.decode([19556, 905]) == "Hello world"  # ByteLevel decoder: no sentencepiece spaces


def test_conversion_happens_once(smollm2_dir):
    from edgetune.models.gguf_dir import CONVERTED_MARKER, resolve_model_directory

    weights = smollm2_dir.path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = resolve_model_directory("SmolLM2-135M-Instruct")
    assert again.path == smollm2_dir.path and weights.stat().st_mtime_ns == before
    assert json.loads((again.path / CONVERTED_MARKER).read_text())["gguf_sha256"] == SMOLLM2.weights_sha256
