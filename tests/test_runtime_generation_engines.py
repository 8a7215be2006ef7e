"""The two decode engines of a generation bundle on the tiny chat model: onnxruntime-genai's generator (the default
where it is installed) and the plain onnxruntime loop (the fallback) choose the same greedy tokens, the default loads
the weights once, the choice is checked, and without onnxruntime-genai the runtime falls back to the plain loop.
Everything else a bundle does is tested on both engines in test_runtime_generation.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_artifact import tiny_chat_bundle_dir, tiny_chat_onnx_dir  # noqa: F401 (session fixtures)

from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import InputError
from edgetune_runtime.tasks.generation.genai_engine import GENAI, PLAIN

pytest.importorskip("onnxruntime_genai")

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
PROMPTS = ["Where is my order?", "I want a refund for order 42", "How do I change my shipping address?"]
# Settings both engines implement themselves: greedy, repetition penalty (either way), stop tokens held back.
SETTINGS = [{}, {"repetition_penalty": 1.3}, {"repetition_penalty": 0.7}, {"min_new_tokens": 24}]


@pytest.fixture(scope="module")
def engines(tiny_chat_bundle_dir):  # noqa: F811
    return Bundle.load(tiny_chat_bundle_dir, engine=GENAI), Bundle.load(tiny_chat_bundle_dir, engine=PLAIN)


def test_both_engines_choose_the_same_greedy_tokens(engines):
    genai, plain = engines
    answers = []
    for prompt in PROMPTS:
        for settings in SETTINGS:
            ours = genai.generate(prompt, max_new_tokens=24, **settings)
            theirs = plain.generate(prompt, max_new_tokens=24, **settings)
            assert ours.token_ids == theirs.token_ids and ours.text == theirs.text, (prompt, settings)
            assert ours.finish_reason == theirs.finish_reason
            answers.append(tuple(ours.token_ids))
    # Not a vacuous match: prompts and settings change the answer, and each engine decoded them itself.
    assert len(set(answers)) >= len(PROMPTS) * 2
    assert genai.genai is not None and plain.genai is None


def test_auto_decodes_with_onnxruntime_genai_and_loads_the_weights_once(tiny_chat_bundle_dir):  # noqa: F811
    bundle = Bundle.load(tiny_chat_bundle_dir)
    assert bundle.engine == GENAI and bundle.execution_provider == "CPUExecutionProvider"
    bundle.generate(PROMPTS[0], max_new_tokens=8)
    assert bundle.verify().passed
    assert bundle._session is None  # no second copy of the weights in a plain session ...
    logits = bundle.decoder.sequence_logits(bundle.prompt_ids(PROMPTS[0]))
    assert bundle._session is not None and logits.shape[1] == bundle.layout.vocab_size  # ... until logits are asked


def test_the_engine_choice_is_checked_in_one_line(tiny_chat_bundle_dir):  # noqa: F811
    import onnxruntime

    with pytest.raises(InputError, match="engine: 'llama' is not one of auto, onnxruntime-genai, onnxruntime"):
        Bundle.load(tiny_chat_bundle_dir, engine="llama")
    with pytest.raises(InputError, match="SessionOptions cannot be handed to it; use engine 'onnxruntime'"):
        Bundle.load(tiny_chat_bundle_dir, engine=GENAI, session_options=onnxruntime.SessionOptions())
    # auto picks what can honour the session options it was given
    assert Bundle.load(tiny_chat_bundle_dir, session_options=onnxruntime.SessionOptions()).engine == PLAIN


def test_without_onnxruntime_genai_the_plain_loop_decodes(tiny_chat_bundle_dir):  # noqa: F811
    code = ("import sys, json; sys.modules['onnxruntime_genai'] = None\n"
            "from edgetune_runtime.bundle import Bundle\n"
            "from edgetune_runtime.errors import InputError\n"
            f"bundle = Bundle.load({str(tiny_chat_bundle_dir)!r})\n"
            f"answer = bundle.generate({PROMPTS[0]!r}, max_new_tokens=12)\n"
            "try:\n"
            f"    Bundle.load({str(tiny_chat_bundle_dir)!r}, engine='onnxruntime-genai')\n"
            "    refused = None\n"
            "except InputError as error:\n"
            "    refused = str(error)\n"
            "print(json.dumps({'engine': bundle.engine, 'tokens': answer.token_ids, 'refused': refused}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(RUNTIME)}, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["engine"] == PLAIN
    assert report["tokens"] == Bundle.load(tiny_chat_bundle_dir).generate(PROMPTS[0], max_new_tokens=12).token_ids
    assert report["refused"] == ("engine onnxruntime-genai: it is not installed (pip install "
                                 "'edgetune-runtime[chat]'); use engine 'onnxruntime' (or 'auto')")


def test_generate_command_takes_the_engine(tiny_chat_bundle_dir):  # noqa: F811
    answers = {}
    for engine in (GENAI, PLAIN):
        done = subprocess.run([sys.executable, "-m", "edgetune_runtime.cli", "generate", str(tiny_chat_bundle_dir),
                               PROMPTS[1], "--max-new-tokens", "12", "--engine", engine, "--threads", "1"],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(RUNTIME)},
                              timeout=120)
        assert done.returncode == 0, done.stderr
        answers[engine] = json.loads(done.stdout)
    assert answers[GENAI]["text"] == answers[PLAIN]["text"] and answers[GENAI]["new_tokens"] == 12
