"""A GGUF model as a Hugging Face directory, de-quantised once into the edgetune cache.

SmolLM2 reaches machines without a hub as a Q4_1 GGUF (`edgetune models pull`). transformers can
de-quantise it on every load (~20 s of parsing), but the onnxruntime-genai model builder reads only
fp16/fp32 GGUF files, and the tokenizer transformers derives from the GGUF is wrong for SmolLM2
(end-of-sequence `<|im_start|>`, a BOS prepended to every encode). So the chat stages read one fp32
directory written here: SFT, the builder and evaluation all see the same weights and the same ids.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.errors import EdgetuneError
from edgetune.models.cache import cache_root
from edgetune.models.resolve import ResolvedModel, resolve_model
from edgetune_runtime.hashing import sha256_file

log = logging.getLogger(__name__)

# Written last into a converted directory: its presence (with the GGUF's sha256) means "complete".
CONVERTED_MARKER = "edgetune-from-gguf.json"
# Raised when the conversion changes, so directories written by an older edgetune are converted again.
CONVERSION_VERSION = 1


def converted_dir_for(gguf_path: Path, gguf_sha256: str) -> Path:
    """Where the directory of one GGUF file goes: named by its content, so an edited file is converted anew."""
    return cache_root() / "models" / "from-gguf" / f"{gguf_path.stem}-{gguf_sha256[:16]}"


def resolve_model_directory(name: str | Path) -> ResolvedModel:
    """`edgetune.models.resolve.resolve_model`, with a GGUF replaced by its converted directory: what the chat
    stages read, so SFT, export and evaluation load the same fp32 weights and tokenizer."""
    return as_hf_directory(resolve_model(name))


def as_hf_directory(resolved: ResolvedModel) -> ResolvedModel:
    """`resolved` itself when it is a Hugging Face directory; for a GGUF, its converted directory (made once).

    The returned model keeps the GGUF's name and sha256 (what was verified), so manifests still name
    the bytes the weights came from. Concurrent callers wait for the one conversion under a lock.
    """
    if resolved.gguf_file is None:
        return resolved
    gguf_path = resolved.path / resolved.gguf_file
    gguf_sha256 = resolved.weights_sha256 or sha256_file(gguf_path)
    target = converted_dir_for(gguf_path, gguf_sha256)
    if not _is_complete(target, gguf_sha256):
        with _waiting_lock(target.with_name(f".{target.name}.lock")):
            if not _is_complete(target, gguf_sha256):  # another process may have written it while we waited
                log.info("de-quantising %s into a Hugging Face directory at %s (once)", gguf_path.name, target)
                with atomic_directory(target, overwrite=True) as staging:
                    convert_gguf(gguf_path, staging)
                    write_json_atomic(staging / CONVERTED_MARKER, {
                        "gguf_file": resolved.gguf_file, "gguf_sha256": gguf_sha256, "version": CONVERSION_VERSION})
    return ResolvedModel(resolved.name, target, f"{resolved.source}, converted from {resolved.gguf_file}",
                         None, gguf_sha256)


def _is_complete(directory: Path, gguf_sha256: str) -> bool:
    import json

    try:
        recorded = json.loads((directory / CONVERTED_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("gguf_sha256") == gguf_sha256 and recorded.get("version") == CONVERSION_VERSION


@contextlib.contextmanager
def _waiting_lock(lock_path: Path) -> Iterator[None]:
    """A blocking flock: a second process converting the same file waits and then finds it done.

    Not `edgetune.exclusive.exclusive_use`, which refuses at once: here waiting is the right answer.
    """
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def convert_gguf(gguf_path: Path, destination: Path) -> None:
    """Write fp32 safetensors, config, generation config and a corrected tokenizer of `gguf_path` to `destination`."""
    import torch
    from transformers import AutoModelForCausalLM

    metadata = _tokenizer_metadata(gguf_path)
    tokenizer = chat_tokenizer_from_gguf(gguf_path, metadata)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    special = {"bos_token_id": metadata["bos_token_id"], "eos_token_id": metadata["eos_token_id"],
               "pad_token_id": metadata["padding_token_id"]}
    for key, value in special.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    model.save_pretrained(destination, safe_serialization=True)
    # The chat template inside tokenizer_config.json (not chat_template.jinja): the one place every reader
    # of the directory (the builder, the bundle, older transformers) looks.
    tokenizer.save_pretrained(destination, save_jinja_files=False)


def _tokenizer_metadata(gguf_path: Path) -> dict:
    """The GGUF's own tokenizer facts (`tokenizer.ggml.*`, chat template, context length), read with `gguf`."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))

    def value(key: str, default=None):
        field = reader.fields.get(key)
        return field.contents() if field is not None else default

    architecture = value("general.architecture")
    metadata = {
        "model": value("tokenizer.ggml.model"),
        "tokens": value("tokenizer.ggml.tokens"),
        "add_bos_token": bool(value("tokenizer.ggml.add_bos_token", False)),
        "bos_token_id": value("tokenizer.ggml.bos_token_id"),
        "eos_token_id": value("tokenizer.ggml.eos_token_id"),
        "unknown_token_id": value("tokenizer.ggml.unknown_token_id"),
        "chat_template": value("tokenizer.chat_template"),
        "context_length": value(f"{architecture}.context_length"),
    }
    metadata["padding_token_id"] = value("tokenizer.ggml.padding_token_id", metadata["eos_token_id"])
    if metadata["model"] != "gpt2" or metadata["eos_token_id"] is None or not metadata["chat_template"]:
        raise EdgetuneError(f"{gguf_path}: only byte-level BPE GGUF chat models (tokenizer.ggml.model gpt2, with an "
                            f"end-of-sequence token and a chat template) can be converted; this one has model "
                            f"{metadata['model']!r}; pass a Hugging Face model directory instead")
    return metadata


def chat_tokenizer_from_gguf(gguf_path: Path, metadata: dict | None = None):
    """transformers' tokenizer of a byte-level BPE GGUF, with the GGUF's own special tokens and no added BOS.

    transformers (4.57) builds it as a Llama tokenizer: BOS and EOS both `<|im_start|>` and a template
    post-processor that prepends it to every encode, and a sentencepiece-style decoder. The GGUF says
    eos/pad `<|im_end|>` and add_bos_token false; a ByteLevel post-processor and decoder give the original
    SmolLM2 ids (its Digits pre-split changes nothing here: the vocabulary has no multi-digit token).
    """
    from tokenizers import decoders, processors
    from transformers import AutoTokenizer, GPT2TokenizerFast

    metadata = metadata or _tokenizer_metadata(gguf_path)
    derived = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    backend = derived.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    tokens = metadata["tokens"]

    def token(index: int | None) -> str | None:
        return tokens[index] if index is not None else None

    # GPT2TokenizerFast, as SmolLM2 itself ships: it never adds a BOS unless asked (add_bos_token false).
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=backend, bos_token=token(metadata["bos_token_id"]), eos_token=token(metadata["eos_token_id"]),
        pad_token=token(metadata["padding_token_id"]), unk_token=token(metadata["unknown_token_id"]),
        add_bos_token=metadata["add_bos_token"], add_prefix_space=False,
        model_max_length=int(metadata["context_length"] or 2048),
    )
    tokenizer.chat_template = metadata["chat_template"]
    return tokenizer
