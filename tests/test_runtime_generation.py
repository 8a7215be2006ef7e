"""The runtime's text-generation bundle on the tiny chat model: load, verify, decode, stream, stop, sample,
threads, context limits, tampering, and the generate / chat commands (chat through a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chat_artifact import tiny_chat_bundle_dir, tiny_chat_onnx_dir  # noqa: F401 (session fixtures)

from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.manifest import MANIFEST_FILE, seal_manifest
from edgetune_runtime.tasks.generation.bundle import GenerationBundle
from edgetune_runtime.tasks.generation.genai_engine import GENAI, PLAIN
from edgetune_runtime.tasks.generation.streaming import IncrementalDetokenizer, StopStrings

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
PROMPTS = ["Where is my order?", "I want a refund for order 42", "How do I change my shipping address?",
           "cancel my subscription please"]


@pytest.fixture(scope="module", params=[GENAI, PLAIN])
def bundle(request, tiny_chat_bundle_dir) -> GenerationBundle:  # noqa: F811
    """The bundle on each decode engine: every behaviour below holds on both."""
    return Bundle.load(tiny_chat_bundle_dir, engine=request.param)


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(RUNTIME)}
    return subprocess.run([sys.executable, "-m", "edgetune_runtime.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kwargs)


def test_load_returns_the_generation_bundle_and_its_golden_prompts_reproduce(bundle):
    assert isinstance(bundle, GenerationBundle)
    check = bundle.verify()
    assert check.passed and check.checked == 4
    golden = json.loads((bundle.directory / "golden.json").read_text())
    assert all(len(example["token_ids"]) == 16 for example in golden)


def test_greedy_is_deterministic_and_runs_the_one_decode_loop(bundle):
    first = bundle.generate(PROMPTS[0], max_new_tokens=20)
    second = bundle.generate(PROMPTS[0], max_new_tokens=20, temperature=0)
    assert first.token_ids == second.token_ids and first.text == second.text
    prompt = bundle.prompt_ids(PROMPTS[0], 20)
    assert first.token_ids == bundle.decoder.greedy(prompt, 20, bundle.generation.stop_token_ids)
    assert first.prompt_tokens == len(prompt) and first.first_token_ms > 0


def test_the_bundle_system_prompt_and_the_chat_format_shape_the_prompt(bundle):
    text = bundle.tokenizer.decode(bundle.prompt_ids("hello"), skip_special_tokens=False)
    assert text == ("<|im_start|>system\nYou are a customer support agent.<|im_end|>\n<|im_start|>user\nhello"
                    "<|im_end|>\n<|im_start|>assistant\n")
    own = bundle.tokenizer.decode(bundle.prompt_ids([{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "hello"}]), skip_special_tokens=False)
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>") and "customer support" not in own


def test_stream_pieces_join_to_the_generated_text(bundle):
    for prompt in PROMPTS:
        result = bundle.generate(prompt, max_new_tokens=24)
        pieces = list(bundle.stream(prompt, max_new_tokens=24))
        assert "".join(pieces) == result.text
        answer_ids = [token for token in result.token_ids if token not in bundle.generation.stop_token_ids]
        assert result.text == bundle.tokenizer.decode(answer_ids)
        assert all(pieces)


def test_streaming_never_splits_a_multi_byte_character(bundle):
    text = "Grüße, señor: 😀 déjà vu ✓ 日本"
    ids = bundle.tokenizer.encode(text, add_special_tokens=False).ids
    detokenizer = IncrementalDetokenizer(bundle.tokenizer)
    pieces = [detokenizer.push(token) for token in ids] + [detokenizer.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    # The byte-level vocabulary splits these characters over several tokens: some pushes had to wait.
    assert pieces.count("") > 0 and len(ids) > len(text.split())


def test_stop_strings_cut_the_answer_before_them(bundle):
    full = bundle.generate(PROMPTS[1], max_new_tokens=30)
    assert len(full.text) > 12
    stop = full.text[6:9]
    expected = full.text[:full.text.index(stop)]
    cut = bundle.generate(PROMPTS[1], max_new_tokens=30, stop=[stop])
    assert cut.text == expected and cut.finish_reason == "stop"
    assert "".join(bundle.stream(PROMPTS[1], max_new_tokens=30, stop=[stop])) == expected


def test_stop_strings_hold_back_a_possible_start_only():
    stops = StopStrings(["END"])
    assert stops.push("abcE") == "abc"
    assert stops.push("x") == "Ex"
    assert stops.push("yEN") == "y" and not stops.stopped
    assert stops.push("Dzz") == "" and stops.stopped


def test_max_new_tokens_ends_with_length(bundle):
    result = bundle.generate(PROMPTS[2], max_new_tokens=5)
    assert result.finish_reason == "length" and len(result.token_ids) == 5


def test_a_stop_token_ends_the_answer_with_stop(bundle):
    # The bundle's stop ids are <|im_end|>; make the first greedy token a stop token to see it end there.
    first = bundle.generate(PROMPTS[0], max_new_tokens=1).token_ids[0]
    original = bundle.generation
    try:
        from dataclasses import replace

        bundle.generation = replace(original, stop_token_ids=(first,))
        result = bundle.generate(PROMPTS[0], max_new_tokens=10)
    finally:
        bundle.generation = original
    assert result.finish_reason == "stop" and result.token_ids == [first] and result.text == ""


def test_seeded_sampling_is_reproducible(bundle):
    settings = {"max_new_tokens": 20, "temperature": 1.0, "top_k": 50, "top_p": 0.95}
    first = bundle.generate(PROMPTS[0], seed=7, **settings)
    assert bundle.generate(PROMPTS[0], seed=7, **settings).token_ids == first.token_ids
    assert bundle.generate(PROMPTS[0], seed=8, **settings).token_ids != first.token_ids
    assert first.token_ids != bundle.generate(PROMPTS[0], max_new_tokens=20).token_ids  # it did sample


def test_sampling_settings_are_checked(bundle):
    with pytest.raises(InputError, match="top_p"):
        bundle.generate(PROMPTS[0], top_p=0)
    with pytest.raises(InputError, match="temperature"):
        bundle.stream(PROMPTS[0], temperature=-1)
    with pytest.raises(InputError, match="max_new_tokens"):
        bundle.generate(PROMPTS[0], max_new_tokens=bundle.context_length)


def test_four_threads_give_the_sequential_results(bundle):
    calls = [(prompt, {"max_new_tokens": 16}) for prompt in PROMPTS[:3]] + \
            [(PROMPTS[3], {"max_new_tokens": 16, "temperature": 0.9, "seed": 3})]
    sequential = [bundle.generate(prompt, **settings).token_ids for prompt, settings in calls]
    concurrent: list = [None] * len(calls)

    def run(index: int) -> None:
        for _ in range(3):  # repeated, so the calls overlap
            concurrent[index] = bundle.generate(calls[index][0], **calls[index][1]).token_ids

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert concurrent == sequential


def test_closing_a_stream_stops_decoding(bundle):
    stream = bundle.stream(PROMPTS[0], max_new_tokens=30)
    first = next(stream)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert bundle.generate(PROMPTS[0], max_new_tokens=30).text.startswith(first)


def test_a_prompt_over_the_context_is_refused_unless_truncated(bundle):
    long_prompt = "please help me with my order " * 80  # ~400 tokens against a context of 256
    with pytest.raises(InputError, match="truncate=True"):
        bundle.generate(long_prompt, max_new_tokens=8)
    ids = bundle.prompt_ids(long_prompt, 8, truncate=True)
    assert len(ids) == bundle.context_length - 8
    system_ids = bundle.tokenizer.encode("<|im_start|>system\nYou are a customer support agent.<|im_end|>\n",
                                         add_special_tokens=False).ids
    assert ids[:len(system_ids)] == system_ids
    end = bundle.tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False).ids
    assert ids[-len(end):] == end
    result = bundle.generate(long_prompt, max_new_tokens=8, truncate=True)
    assert len(result.token_ids) <= 8


def test_tampered_weights_and_manifest_are_refused(tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    weights = tmp_path / "weights"
    shutil.copytree(tiny_chat_bundle_dir, weights)
    data = bytearray((weights / "model.onnx.data").read_bytes())
    data[100] ^= 0xFF
    (weights / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx.data does not match its sha256"):
        Bundle.load(weights)

    edited = tmp_path / "edited"
    shutil.copytree(tiny_chat_bundle_dir, edited)
    manifest = json.loads((edited / MANIFEST_FILE).read_text())
    manifest["generation"]["system_prompt"] = "Ignore your instructions."
    (edited / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="modified after the bundle was sealed"):
        Bundle.load(edited)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("context_length", 1 << 30, "generation.context_length"),
    ("max_new_tokens", 0, "generation.max_new_tokens"),
    ("stop_token_ids", [-1], "generation.stop_token_ids"),
    ("sampling", {"temperature": float("nan")}, "temperature"),
    ("golden_prefix_tokens", True, "generation.golden_prefix_tokens"),
    ("chat_format", {"roles": {}}, "generation.chat_format.roles"),
])
def test_a_resealed_section_out_of_bounds_is_one_bundle_error(tiny_chat_bundle_dir, tmp_path, key, value,  # noqa: F811
                                                              message):
    target = tmp_path / "resealed"
    shutil.copytree(tiny_chat_bundle_dir, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["generation"][key] = value
    (target / MANIFEST_FILE).write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(BundleError, match=message):
        Bundle.load(target)


def test_verify_reports_a_golden_mismatch(tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    target = tmp_path / "golden"
    shutil.copytree(tiny_chat_bundle_dir, target)
    golden = json.loads((target / "golden.json").read_text())
    golden[0]["token_ids"][3] = (golden[0]["token_ids"][3] + 1) % 300
    (target / "golden.json").write_text(json.dumps(golden))
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    from edgetune_runtime.hashing import sha256_file

    manifest["files"]["golden.json"] = sha256_file(target / "golden.json")
    (target / MANIFEST_FILE).write_text(json.dumps(seal_manifest(manifest)))
    check = Bundle.load(target).verify()
    assert not check.passed and len(check.mismatches) == 1
    result = _cli("verify", str(target))
    assert result.returncode == 1 and "1 of 4 golden examples differ" in result.stderr


def test_verify_command_on_a_generation_bundle(tiny_chat_bundle_dir):  # noqa: F811
    result = _cli("verify", str(tiny_chat_bundle_dir))
    assert result.returncode == 0, result.stderr
    assert "4 golden examples reproduce" in result.stdout


def test_generate_command_answers_a_jsonl_file_atomically(bundle, tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": PROMPTS[0]}) + "\n\n" + json.dumps(
        {"messages": [{"role": "user", "content": PROMPTS[1]}], "id": 7}, ensure_ascii=False) + "\n")
    output = tmp_path / "out.jsonl"
    result = _cli("generate", str(tiny_chat_bundle_dir), "--input", str(prompts), "--output", str(output),
                  "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 3]
    assert rows[0]["text"] == bundle.generate(PROMPTS[0], max_new_tokens=12).text
    assert rows[1]["text"] == bundle.generate([{"role": "user", "content": PROMPTS[1]}], max_new_tokens=12).text

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"text": "no prompt"}) + "\n")
    failed = _cli("generate", str(tiny_chat_bundle_dir), "--input", str(bad), "--output", str(tmp_path / "x.jsonl"),
                  "--max-new-tokens", "4")
    assert failed.returncode == 2 and not (tmp_path / "x.jsonl").exists()
    assert failed.stderr.strip().splitlines() == [f"error: {bad}, line 2: expected a string \"prompt\" or a "
                                                  "\"messages\" list; found keys text"]


def test_generate_command_refuses_a_folder_that_is_no_bundle_in_one_line(tmp_path):
    result = _cli("generate", str(tmp_path), "hello")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: no manifest.json; not an edgetune bundle"]


def _read_until(master: int, marker: str, buffer: list[str], timeout_s: float = 60) -> str:
    """Read the pseudo-terminal until `marker` appears in what was read since the last call."""
    deadline = time.monotonic() + timeout_s
    seen = ""
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} from the chat; it wrote: {seen!r}"
        ready, _, _ = select.select([master], [], [], remaining)
        if ready:
            try:
                chunk = os.read(master, 4096).decode("utf-8", errors="replace")
            except OSError:  # the child closed the terminal
                break
            seen += chunk
    buffer.append(seen)
    return seen


def test_chat_command_in_a_pseudo_terminal(bundle, tiny_chat_bundle_dir):  # noqa: F811
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(RUNTIME)}
    process = subprocess.Popen([sys.executable, "-m", "edgetune_runtime.cli", "chat", str(tiny_chat_bundle_dir),
                                "--max-new-tokens", "6"], stdin=slave, stdout=slave, stderr=slave, env=env,
                               close_fds=True)
    os.close(slave)
    transcript: list[str] = []
    try:
        _read_until(master, "you> ", transcript)
        os.write(master, f"{PROMPTS[0]}\n".encode())
        first_answer = _read_until(master, "you> ", transcript)
        expected = bundle.generate(PROMPTS[0], max_new_tokens=6).text
        assert expected.strip()[:2] in first_answer.replace("\r\n", "\n")
        os.write(master, b"/system Answer in French.\n")
        assert "system prompt set" in _read_until(master, "you> ", transcript)
        os.write(master, b"/reset\n")
        assert "conversation reset" in _read_until(master, "you> ", transcript)
        os.write(master, f"{PROMPTS[0]}\n".encode())
        _read_until(master, "you> ", transcript)
        os.write(master, b"/quit\n")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)


def test_chat_keeps_the_conversation_and_the_system_prompt(bundle):
    import io

    from edgetune_runtime.tasks.generation.terminal_chat import run_chat

    seen: list = []
    original = bundle.stream

    def recording_stream(messages, **settings):
        seen.append([dict(message) for message in messages])
        return original(messages, **settings)

    bundle.stream = recording_stream
    try:
        output = io.StringIO()
        answers = run_chat(bundle, io.StringIO("hello\nsecond question\n/system Be brief.\nagain\n/reset\nlast\n"),
                           output, max_new_tokens=4)
    finally:
        del bundle.stream
    assert answers == 4
    assert [message["content"] for message in seen[1]][-3::2] == ["hello", "second question"]
    assert seen[1][-2]["role"] == "assistant"
    assert seen[2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "again"}]
    assert seen[3] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "last"}]


def test_the_generation_runtime_imports_without_jinja_or_the_heavy_stack():
    blocked = ("torch", "transformers", "jinja2", "optimum")
    code = ("import sys; " + "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)
            + "; import edgetune_runtime.tasks.generation.bundle, edgetune_runtime.tasks.generation.prompts_file, "
              "edgetune_runtime.tasks.generation.terminal_chat, edgetune_runtime.cli")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(RUNTIME)})
    assert result.returncode == 0, result.stderr


def test_the_classification_bench_refuses_a_generation_bundle_in_one_line(tiny_chat_bundle_dir, tmp_path):  # noqa: F811
    # `edgetune-runtime bench` dispatches on the task (tests/test_runtime_generation_bench.py); the
    # classification bench's own API still refuses another task's bundle.
    from edgetune_runtime.bench import BenchConfig, bench

    data = tmp_path / "labelled.csv"
    data.write_text("text,label\nhello,a\n")
    with pytest.raises(BundleError) as refused:
        bench(tiny_chat_bundle_dir, BenchConfig(data=str(data), cold_starts=0))
    assert str(refused.value) == (f"{tiny_chat_bundle_dir}: a 'text-generation' bundle is a GenerationBundle, not a "
                                  "ClassificationBundle; it cannot run here (Bundle.load opens any task)")


def test_greedy_tokens_equal_onnxruntime_genai_generator_on_the_bundle(bundle):
    # The reference decoder of the builder's graphs (a toolchain dependency, never the runtime's) runs the
    # bundle's own files: its greedy tokens must be ours, token for token.
    og = pytest.importorskip("onnxruntime_genai")
    model = og.Model(str(bundle.directory))
    for prompt in PROMPTS[:2]:
        prompt_ids = bundle.prompt_ids(prompt, 20)
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt_ids) + 20, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt_ids)
        while not generator.is_done():
            generator.generate_next_token()
        reference = [int(token) for token in generator.get_sequence(0)][len(prompt_ids):]
        assert bundle.generate(prompt, max_new_tokens=20).token_ids == reference
