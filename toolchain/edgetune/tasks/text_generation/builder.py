"""onnxruntime-genai's model builder, run as a subprocess: one build in, a loaded and checked directory out.

The builder (0.12.2) writes a fused KV-cache decoder (`model.onnx` + `model.onnx.data`), its
`genai_config.json` and the tokenizer files with the chat template. It runs in a child process so
its several hundred MB of PyTorch state are freed with it and its chatter goes to a log file, not
the user's terminal. Some builds exit 0 yet write a graph that does not load (NOTES pitfall 3), so
every build is loaded and stepped once before anything reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune_runtime.atomic_write import write_json_atomic
from edgetune_runtime.tasks.generation.decoder import GENAI_CONFIG, Decoder

BUILDER_MODULE = "onnxruntime_genai.models.builder"
BUILDER_LOG = "builder.log"
# Files of a build that are not the graph: what export and quantize carry into their outputs.
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def run_model_builder(model_dir: Path, output_dir: Path, precision: str, extra_options: dict[str, object],
                      cache_dir: Path, log_path: Path) -> None:
    """Build `model_dir` (a Hugging Face causal-LM directory) into `output_dir`; failures are one line."""
    # Tied embeddings shared with the lm_head make some int4/int8-head builds unloadable (NOTES pitfall 3).
    options = {"shared_embeddings": "false", **{key: _option_text(value) for key, value in extra_options.items()}}
    command = [sys.executable, "-m", BUILDER_MODULE, "-i", str(model_dir), "-o", str(output_dir), "-p", precision,
               "-e", "cpu", "-c", str(cache_dir), "--extra_options", *(f"{k}={v}" for k, v in options.items())]
    # The builder must never reach a model hub: everything it needs is in model_dir.
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                    check=False).returncode
    if returncode != 0:
        raise EdgetuneError(f"onnxruntime-genai's model builder failed on {model_dir} ({precision}, "
                            f"{' '.join(f'{k}={v}' for k, v in options.items())}): {_last_error_line(log_path)}; "
                            f"full log in {log_path}")
    if not (output_dir / GENAI_CONFIG).is_file():
        raise EdgetuneError(f"onnxruntime-genai's model builder wrote no {GENAI_CONFIG} for {model_dir}; full log "
                            f"in {log_path}")


def _option_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _last_error_line(log_path: Path) -> str:
    lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:300]


def set_context_length(directory: Path, context_length: int) -> None:
    """Set the context the KV cache is allocated for: `model.context_length` and `search.max_length`.

    onnxruntime-genai pre-allocates the cache to `search.max_length` (the model's 8192 by default:
    563 MB peak RSS against 214 MB at 256, NOTES), and the runtime's `Decoder` refuses prompts past
    `model.context_length`; both say the context the artifact is meant for.
    """
    path = directory / GENAI_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model"]["context_length"] = context_length
    config.setdefault("search", {})["max_length"] = context_length
    write_json_atomic(path, config)


def load_build(directory: Path, threads: int = 1) -> Decoder:
    """The build's decoder, after one step through the graph: a build that exits 0 may still not load."""
    try:
        decoder = Decoder.from_directory(directory, intra_op_threads=threads)
        decoder.forward([0], decoder.new_cache())
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types; the message is what matters
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:300]
        raise EdgetuneError(f"{directory}: the built model does not load or run in onnxruntime ({first_line}); "
                            f"this builder option set is broken for this model") from None
    return decoder


def chat_template_of(directory: Path) -> str | None:
    """The Jinja chat template a tokenizer directory carries (its own file, or tokenizer_config.json's entry)."""
    template_file = directory / CHAT_TEMPLATE_FILE
    if template_file.is_file():
        return template_file.read_text(encoding="utf-8")
    config_path = directory / "tokenizer_config.json"
    if config_path.is_file():
        template = json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def graph_size_mb(directory: Path, model_file: str) -> float:
    """Size of the graph and its external weights, as shipped."""
    return round(sum(path.stat().st_size for path in directory.glob(f"{model_file}*") if path.is_file()) / 1e6, 2)
