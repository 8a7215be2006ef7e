"""A tiny Llama chat model and tokenizer, built from a config, for the chat tests.

Two layers, hidden 64, a 384-token byte-level BPE vocabulary trained on Bitext support text, the
special tokens and chat template of SmolLM2 (`<|im_start|>role ... <|im_end|>`). The weights are
random with a wide initialisation, so greedy decoding gives varied tokens rather than one token
repeated (a default-initialised model this small predicts near-uniform logits and repeats its
argmax): parity and golden checks then compare real sequences.
"""

from __future__ import annotations

import csv
from pathlib import Path

# SmolLM2-135M-Instruct's own template (its tokenizer_config.json), so the tiny model formats
# conversations exactly as the real one does.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 384


def corpus_lines(bitext_csv: Path | None, limit: int = 600) -> list[str]:
    """Prompts and responses of the first `limit` Bitext rows, or a small fixed text without the file."""
    if bitext_csv is not None and Path(bitext_csv).is_file():
        lines: list[str] = []
        with open(bitext_csv, newline="", encoding="utf-8") as handle:
            for index, row in enumerate(csv.DictReader(handle)):
                if index >= limit:
                    break
                lines += [row["instruction"], row["response"]]
        return lines
    return ["How do I cancel my order {{Order Number}}?", "I want to track my refund, please.",
            "Thank you for reaching out. I can help you with that: go to {{Online Company Portal Info}}."] * 40


def build_tiny_chat_model(directory: Path, bitext_csv: Path | None = None, seed: int = 0) -> Path:
    """Write a Hugging Face causal-LM directory (config, safetensors, tokenizer, chat template)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus_lines(bitext_csv), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, initializer_range=0.3,
        bos_token_id=fast.convert_tokens_to_ids("<|im_start|>"), eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(directory)
    return directory
