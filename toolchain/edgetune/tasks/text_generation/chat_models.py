"""The two kinds of chat model an evaluation compares, behind one face: logits of a sequence, greedy ids.

A Hugging Face causal-LM directory runs in PyTorch (`model.generate(do_sample=False)`); an ONNX chat
artifact (a directory with `genai_config.json`, export/quantize output) runs through the runtime's
one decode loop, `edgetune_runtime.tasks.generation.decoder.Decoder`. Both read their tokenizer and
chat template from their own directory, so every score is computed by the same code from the same
three things: prompt ids, generated ids and logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy

from edgetune.errors import EdgetuneError
from edgetune_runtime.tasks.generation.decoder import GENAI_CONFIG


class ChatModel(Protocol):
    kind: str
    """"pytorch" or "onnx": what ran the model, for the report."""
    tokenizer: object
    """The directory's Hugging Face tokenizer, with its chat template."""
    stop_ids: tuple[int, ...]
    """Token ids that end an answer (the end-of-turn token)."""
    context_length: int

    def sequence_logits(self, token_ids: list[int]) -> numpy.ndarray:
        """Logits (len(token_ids), vocabulary) at every position, teacher-forced."""

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation, a stop token included when one ends it."""


def load_chat_model(path: str | Path, threads: int = 0) -> ChatModel:
    """A chat model from an ONNX chat artifact (has genai_config.json) or a Hugging Face causal-LM directory."""
    directory = Path(path)
    if (directory / GENAI_CONFIG).is_file():
        model: ChatModel = OnnxChatModel(directory, threads)
    elif (directory / "config.json").is_file():
        model = TorchChatModel(directory)
    else:
        raise EdgetuneError(f"{directory}: neither an ONNX chat artifact ({GENAI_CONFIG}) nor a Hugging Face model "
                            f"directory (config.json); pass a fine-tuned, exported or quantised chat model")
    if not getattr(model.tokenizer, "chat_template", None):
        raise EdgetuneError(f"{directory}: the tokenizer has no chat template (tokenizer_config.json "
                            f"`chat_template` or chat_template.jinja); use an instruct/chat model")
    return model


def _tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def _ids(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(token) for token in (value if isinstance(value, (list, tuple)) else [value]))


class TorchChatModel:
    kind = "pytorch"

    def __init__(self, directory: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = _tokenizer(directory)
        self.model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        generation = self.model.generation_config
        self.stop_ids = _ids(generation.eos_token_id) or _ids(self.tokenizer.eos_token_id)
        self.pad_id = generation.pad_token_id if generation.pad_token_id is not None else self.stop_ids[0]
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 20)

    def sequence_logits(self, token_ids: list[int]) -> numpy.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.tensor([token_ids])).logits[0].float().numpy()

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        import torch
        from transformers import GenerationConfig

        # A config of its own, so sampling settings the model ships with (temperature, top_p) stay out of it.
        settings = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=list(self.stop_ids),
                                    pad_token_id=self.pad_id)
        with torch.inference_mode():
            output = self.model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids),
                                         dtype=torch.long), generation_config=settings)
        return output[0, len(prompt_ids):].tolist()


class OnnxChatModel:
    kind = "onnx"

    def __init__(self, directory: Path, threads: int = 0) -> None:
        from edgetune_runtime.tasks.generation.decoder import Decoder

        self.decoder = Decoder.from_directory(directory, intra_op_threads=threads)
        self.tokenizer = _tokenizer(directory)
        self.stop_ids = self.decoder.layout.eos_token_ids or _ids(self.tokenizer.eos_token_id)
        self.context_length = self.decoder.layout.context_length

    def sequence_logits(self, token_ids: list[int]) -> numpy.ndarray:
        return self.decoder.sequence_logits(token_ids)

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        return self.decoder.greedy(prompt_ids, max_new_tokens, self.stop_ids)
