"""The padding token a bundle's runtime pads batches with, read from the tokenizer files it ships."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.errors import EdgetuneError

TOKENIZER_FILE = "tokenizer.json"


def pad_token(source_dir: Path) -> dict:
    """{"pad_token", "pad_id"} of the model in `source_dir`; [PAD] when its configs name none."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source_dir / TOKENIZER_FILE))
    token = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = source_dir / name
        if path.is_file():
            value = json.loads(path.read_text()).get("pad_token")
            token = value.get("content") if isinstance(value, dict) else value
            if token:
                break
    token = token or "[PAD]"
    pad_id = tokenizer.token_to_id(token)
    if pad_id is None:
        raise EdgetuneError(f"{source_dir}: pad token {token!r} is not in the tokenizer's vocabulary")
    return {"pad_token": token, "pad_id": pad_id}
