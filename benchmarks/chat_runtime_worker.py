"""One contestant of `chat_runtime.py`, in a process of its own: loads one engine, then decodes on request.

    python chat_runtime_worker.py ENGINE MODEL THREADS

ENGINE is one of `ENGINES`; MODEL is the bundle directory, the GGUF file or the Hugging Face directory
that engine reads. The worker prints one JSON line when loaded (`{"ready": ...}`), then answers each
JSON line on stdin (`{"prompt_ids", "new_tokens", "messages", "text"}`) with one JSON line: the time to
the first new token, the seconds from the first new token to the last, and the tokens. Every engine
decodes greedily and exactly `new_tokens` tokens (end-of-sequence cannot end an answer early).

Standard library only at the top: the llama.cpp contestant runs in a virtual environment of its own
(no onnxruntime, no edgetune), and each engine imports its library inside its loader, so a process
holds one engine and its peak RSS is that engine's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

Answer = dict
Engine = Callable[[dict], Answer]


def load_edgetune(model: str, threads: int, engine: str = "auto") -> tuple[Engine, str]:
    """The runtime as an app calls it: `GenerationBundle.generate` on the conversation (chat format,
    tokenising, token choice, detokenising and timing included), on `engine`. A request with `"bare": true`
    is that engine's floor on the same model instead: the runtime bench's bare loop (onnxruntime-genai's
    own generator loop, or `session.run` with a numpy KV cache and argmax for the plain engine), so the
    runtime's overhead is measured as `edgetune-runtime bench` measures it."""
    from edgetune_runtime.envelope import Bundle
    from edgetune_runtime.tasks.generation.bench import GREEDY, bare_decode_seconds, bare_genai_decode_seconds

    bundle = Bundle.load(model, intra_op_threads=threads, engine=engine)

    def run(request: dict) -> Answer:
        count = request["new_tokens"]
        if request.get("bare"):
            started = time.perf_counter()
            if bundle.genai is not None:
                decode_s = bare_genai_decode_seconds(bundle.genai, request["prompt_ids"], count)
            else:
                decode_s = bare_decode_seconds(bundle.decoder, request["prompt_ids"], count)
            # The loop times its own decoding; the rest of the call is the cache set-up and the prompt's pass.
            return {"first_token_ms": (time.perf_counter() - started - decode_s) * 1000, "decode_s": decode_s,
                    "token_ids": None}
        answer = bundle.generate(request["messages"], max_new_tokens=count, min_new_tokens=count, **GREEDY)
        # Same definition as `edgetune-runtime bench`: the gaps between consecutive new tokens.
        return {"first_token_ms": answer.first_token_ms, "decode_s": sum(answer.inter_token_ms) / 1000,
                "token_ids": answer.token_ids, "prompt_tokens": answer.prompt_tokens}

    return run, f"{_version('edgetune-runtime')} on {bundle.engine} {_engine_version(bundle.engine)}"


def load_onnxruntime_genai(model: str, threads: int) -> tuple[Engine, str]:
    """onnxruntime-genai's own generator on the bundle's files (its genai_config.json)."""
    import onnxruntime_genai as og

    config = og.Config(model)
    # The builder writes no thread count; without one the session takes every core.
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    engine = og.Model(config)

    def run(request: dict) -> Answer:
        prompt_ids, count = request["prompt_ids"], request["new_tokens"]
        started = time.perf_counter()
        params = og.GeneratorParams(engine)
        # min_length keeps end-of-sequence out until the count is reached.
        params.set_search_options(max_length=len(prompt_ids) + count, min_length=len(prompt_ids) + count,
                                  do_sample=False)
        generator = og.Generator(engine, params)
        generator.append_tokens(prompt_ids)  # the prompt's forward pass
        tokens, times = [], []
        for _ in range(count):
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            times.append(time.perf_counter())
        return _timed(started, times, tokens)

    return run, og.__version__


def load_llama_cpp(model: str, threads: int) -> tuple[Engine, str]:
    """llama.cpp through llama-cpp-python: `Llama.generate`, greedy, on the same prompt ids."""
    import llama_cpp

    extra_buffer_types = not _has_amx()
    if not extra_buffer_types:
        # llama.cpp's AMX buffer type segfaults at the first decode on this CPU (see
        # NOTES-chat-and-edge.md); Llama() exposes no switch, so its default model params are amended.
        defaults = llama_cpp.llama_cpp.llama_model_default_params

        def without_extra_buffer_types():
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffer_types
    engine = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                             verbose=False)

    def run(request: dict) -> Answer:
        prompt_ids, count = request["prompt_ids"], request["new_tokens"]
        same_ids = engine.tokenize(request["text"].encode(), add_bos=False, special=True) == prompt_ids
        # generate() reuses a cached prompt prefix; an app answering a new conversation starts from nothing.
        engine.reset()
        started = time.perf_counter()
        tokens, times = [], []
        # temp 0 is llama.cpp's greedy sampler; generate() itself never stops at end-of-sequence.
        stream = engine.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        for token in stream:
            tokens.append(int(token))
            times.append(time.perf_counter())
            if len(tokens) == count:
                break
        stream.close()
        return _timed(started, times, tokens) | {"prompt_ids_match_llama_tokenizer": same_ids}

    return run, f"llama-cpp-python {llama_cpp.__version__}, extra buffer types {'on' if extra_buffer_types else 'off'}"


def load_pytorch(model: str, threads: int) -> tuple[Engine, str]:
    """transformers `generate` in fp32 with its KV cache, greedy; a streamer stamps each new token."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(threads)
    engine = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()

    class TokenClock(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:  # first with the prompt, then with each new token
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run(request: dict) -> Answer:
        prompt_ids, count = request["prompt_ids"], request["new_tokens"]
        started = time.perf_counter()
        clock = TokenClock()
        with torch.inference_mode():
            ids = torch.tensor([prompt_ids])
            output = engine.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                                     min_new_tokens=count, do_sample=False, repetition_penalty=1.0,
                                     temperature=None, top_p=None, top_k=None, streamer=clock,
                                     pad_token_id=engine.generation_config.eos_token_id)
        return _timed(started, clock.times[1:], output[0, len(prompt_ids):].tolist())

    return run, f"torch {torch.__version__}"


ENGINES: dict[str, Callable[[str, int], tuple[Engine, str]]] = {
    "edgetune": load_edgetune,
    "edgetune-plain": lambda model, threads: load_edgetune(model, threads, engine="onnxruntime"),
    "onnxruntime-genai": load_onnxruntime_genai,
    "llama.cpp": load_llama_cpp,
    "pytorch-fp32": load_pytorch,
}


def _timed(started: float, times: list[float], tokens: list[int]) -> Answer:
    return {"first_token_ms": (times[0] - started) * 1000, "decode_s": times[-1] - times[0], "token_ids": tokens}


def _has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and "amx_tile" in line.split() for line in cpuinfo)
    except OSError:
        return False


def _engine_version(engine: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(engine)


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def main(engine_name: str, model: str, threads: str) -> None:
    # Replies go to a private copy of stdout; fd 1 then points at stderr, so whatever a C library prints
    # cannot corrupt the JSON lines the parent reads.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    started = time.perf_counter()
    run, version = ENGINES[engine_name](model, int(threads))
    replies.write(json.dumps({"ready": True, "engine": engine_name, "version": version,
                              "import_and_load_s": round(time.perf_counter() - started, 3), "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        replies.write(json.dumps(run(json.loads(line))) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
