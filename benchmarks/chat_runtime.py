"""Benchmark: edgetune's chat runtime beside llama.cpp, onnxruntime-genai and PyTorch (issue 17, item 6).

The same model for everybody, SmolLM2-135M-Instruct as it reaches this machine (a Q4_1 GGUF):
- edgetune: its int4 bundle (export at 512 tokens of context -> int4-block32 -> bundle, built here
  once under runs/chat-runtime-bench/) through `GenerationBundle.generate`, what an app calls, on the
  runtime's default engine (onnxruntime-genai's generator where it is installed);
- bare-engine: that engine's bare loop (`edgetune-runtime bench`'s: onnxruntime-genai's
  generate_next_token / get_next_tokens) on the edgetune contestant's own model, the engine's floor:
  the runtime's overhead is measured against it as `edgetune-runtime bench` measures it;
- edgetune-plain: the same bundle on the runtime's fallback engine, the plain onnxruntime loop;
- bare-onnxruntime: the bench's bare plain loop (`session.run`, numpy KV cache, argmax) on the
  edgetune-plain contestant's own session (a bare loop in a process of its own decoded ~10% faster
  than the runtime, while on one session the two were within noise of each other);
- onnxruntime-genai: its own generator on the bundle's files, in a process of its own;
- llama.cpp: llama-cpp-python on the Q4_1 GGUF itself, in its own virtual environment;
- pytorch-fp32: transformers `generate` with its KV cache on the fp32 directory edgetune de-quantised
  from the GGUF (what the bundle was exported from).

Each contestant runs in a process of its own (`chat_runtime_worker.py`, JSON lines over stdin and
stdout), so its peak RSS is its own: VmHWM of that process from /proc/PID/status after its last
answer, interpreter and imports included. The contestants take shuffled turns on each prompt
(`edgetune_runtime.timing.interleaved_timings`) at every thread count. Prompts are real Bitext
instructions in the bundle's chat format (system turn included), ~60 tokens; every contestant gets
the same prompt ids, decodes greedily and exactly --new-tokens tokens (end-of-sequence ignored).
Time to first token: from the call to the first new token (edgetune's includes its chat format and
tokenising). Decode tokens/s: (new tokens - 1) / (last token - first token), median over the calls.

Targets at 1 thread (issue 17): decode >= 1.5x llama.cpp's tokens/s (aim >= 100); first token <= 0.6x
llama.cpp's; peak RSS <= 250 MB; the runtime's overhead over the bare engine <= 5% of decode time.

    python benchmarks/chat_runtime.py [--rounds 3 --prompts 5 --threads 1,2]
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_times, run_context, steal_fraction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORKER = Path(__file__).resolve().parent / "chat_runtime_worker.py"
BITEXT = REPO.parent / "shared" / "data" / "bitext_support" / "customer_support.csv"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONTEXT_LENGTH = 512
CONTESTANTS = ("edgetune", "bare-engine", "edgetune-plain", "bare-onnxruntime", "onnxruntime-genai", "llama.cpp",
               "pytorch-fp32")
BARE_HOSTS = {"bare-engine": "edgetune", "bare-onnxruntime": "edgetune-plain"}
"""A bare loop runs in the process (on the model) of the contestant it is the floor of."""
TARGETS = {"decode_vs_llama_cpp_min": 1.5, "decode_tokens_per_s_aim": 100.0, "first_token_vs_llama_cpp_max": 0.6,
           "peak_rss_mb_max": 250.0, "overhead_fraction_max": 0.05}
PEAK_RSS_HOW = ("VmHWM of the contestant's own worker process (/proc/PID/status) after its last answer: the Python "
                "interpreter, the engine's imports and the model; llama.cpp's memory-mapped GGUF pages count once "
                "touched")


# --- the edgetune bundle -------------------------------------------------------------------------------------

def ensure_bundle(work: Path, data: Path) -> Path:
    """The int4 bundle of the base model, built with edgetune's own commands unless already there."""
    validation = work / "validation.csv"
    if not validation.exists():
        _write_validation(data, validation)
    edgetune = Path(sys.executable).parent / "edgetune"
    steps = [
        (work / "export", ["export", MODEL, work / "export", "--task", "chat", "--context-length", CONTEXT_LENGTH,
                           "--validation", validation]),
        (work / "int4", ["quantize", work / "export", work / "int4", "--variant", "int4-block32", "--keep",
                         "int4-block32", "--max-quality-drop", 100, "--validation", validation]),
        (work / "bundle", ["bundle", work / "int4", work / "bundle", "--validation", validation]),
    ]
    for output, arguments in steps:
        if output.exists():  # every stage renames its output into place when it is complete
            continue
        print(f"building {output}: edgetune {' '.join(map(str, arguments))}", file=sys.stderr, flush=True)
        subprocess.run([str(part) for part in [edgetune, *arguments]], check=True, cwd=REPO)
    return work / "bundle"


def _write_validation(data: Path, path: Path) -> None:
    """Held-out rows for the stages' checks: the last two of each intent (timed prompts come from the first)."""
    from edgetune_runtime.atomic_write import atomic_file

    by_intent: dict[str, list[dict]] = {}
    with open(data, newline="") as handle:
        for row in csv.DictReader(handle):
            by_intent.setdefault(row["intent"], []).append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "response", "intent"], lineterminator="\n")
        writer.writeheader()
        for intent in sorted(by_intent):
            for row in by_intent[intent][-2:]:
                writer.writerow({key: row[key] for key in ("instruction", "response", "intent")})


# --- prompts -------------------------------------------------------------------------------------------------

def timing_requests(bundle, data: Path, count: int, new_tokens: int, target_tokens: int) -> list[dict]:
    """`count` Bitext instructions from different intents, each the one of its intent whose prompt (chat
    format and system turn included) comes closest to `target_tokens` (the first such row); as worker requests."""
    by_intent: dict[str, list[tuple[int, str]]] = {}
    with open(data, newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):  # line 1 is the header
            if row["instruction"].strip():
                by_intent.setdefault(row["intent"], []).append((number, row["instruction"]))
    intents = sorted(by_intent)
    if count > len(intents):
        raise click.UsageError(f"--prompts {count}: {data} has {len(intents)} intents; ask for at most that many")
    requests = []
    for intent in intents[::max(1, len(intents) // count)][:count]:
        lengths = [(abs(len(bundle.prompt_ids(text, new_tokens)) - target_tokens), number, text)
                   for number, text in by_intent[intent]]
        _, number, text = min(lengths)
        messages = bundle.conversation(text)
        requests.append({"messages": messages, "prompt_ids": bundle.prompt_ids(messages, new_tokens),
                         "text": bundle.generation.chat_format.render(messages), "new_tokens": new_tokens,
                         "where": f"{data.name}, line {number} ({intent})"})
    return requests


# --- contestants ---------------------------------------------------------------------------------------------

class Worker:
    """One contestant's process: loads its engine, then answers one request at a time."""

    def __init__(self, name: str, python: Path, model: Path, threads: int, log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as stderr:
            self.process = subprocess.Popen([str(python), str(WORKER), name, str(model), str(threads)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.ready = self._reply()

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def peak_rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise click.ClickException(f"the {self.name} worker stopped (exit {code}); {self.log}:\n" + "\n".join(tail))
        return json.loads(line)


def run_threads(threads: int, models: dict[str, tuple[Path, Path]], requests: list[dict], rounds: int, warmup: int,
                logs: Path) -> dict:
    """Every contestant at one thread count, in shuffled turns; per contestant its figures."""
    from edgetune_runtime.timing import interleaved_timings

    workers: dict[str, Worker] = {}
    try:
        for name, (python, model) in models.items():
            print(f"threads {threads}: loading {name}", file=sys.stderr, flush=True)
            host = BARE_HOSTS.get(name, name)
            if host not in workers:
                workers[host] = Worker(host, python, model, threads, logs / f"{host}-{threads}-threads.log")
            workers[name] = workers[host]
        answers: dict[str, list[dict]] = {name: [] for name in workers}

        def turn(name: str):
            def call(index: int) -> None:
                request = requests[index % len(requests)]
                answers[name].append(workers[name].ask(request | {"bare": name in BARE_HOSTS}))
            return call

        calls = rounds * len(requests)
        print(f"threads {threads}: {calls} answers of {requests[0]['new_tokens']} tokens per contestant, in turns",
              file=sys.stderr, flush=True)
        interleaved_timings({name: turn(name) for name in models}, calls, warmup=warmup)
        warm = min(warmup, calls)
        answers = {name: replies[warm:] for name, replies in answers.items()}  # the warm-up calls went first
        figures = {name: _figures(workers[name], answers[name], requests, answers.get("edgetune"))
                   for name in models}
        for bare, host in BARE_HOSTS.items():
            if bare in figures:
                figures[bare]["peak_rss_mb"] = None  # it ran in its host's process
                figures[bare]["version"] = f"{figures[bare]['version']}: its bare loop, in the {host} process"
    finally:
        for worker in {id(worker): worker for worker in workers.values()}.values():
            worker.close()
    result = {"threads": threads, "contestants": figures}
    if "edgetune" in answers and "bare-engine" in answers:
        result["runtime_overhead"] = _overhead(answers["edgetune"], answers["bare-engine"])
    if "edgetune-plain" in answers and "bare-onnxruntime" in answers:
        result["plain_runtime_overhead"] = _overhead(answers["edgetune-plain"], answers["bare-onnxruntime"])
    return result


def _figures(worker: Worker, answers: list[dict], requests: list[dict], edgetune: list[dict] | None) -> dict:
    new_tokens = requests[0]["new_tokens"]
    for answer in answers:
        if answer["token_ids"] is not None and len(answer["token_ids"]) != new_tokens:
            raise click.ClickException(f"{worker.name} decoded {len(answer['token_ids'])} tokens, not {new_tokens}")
    first_ms = [answer["first_token_ms"] for answer in answers]
    rates = [(new_tokens - 1) / answer["decode_s"] for answer in answers]
    figures = {
        "version": worker.ready["version"], "import_and_load_s": worker.ready["import_and_load_s"],
        "first_token_p50_ms": _round(statistics.median(first_ms)), "first_token_max_ms": _round(max(first_ms)),
        "decode_tokens_per_s": _round(statistics.median(rates)),
        "decode_tokens_per_s_range": [_round(min(rates)), _round(max(rates))],
        "peak_rss_mb": worker.peak_rss_mb(), "answers": len(answers),
    }
    if edgetune is not None and answers[0]["token_ids"] is not None and answers is not edgetune:
        # Greedy tokens against edgetune's on the same prompt: the same int4 graph must agree token for token;
        # llama.cpp's Q4_1 and PyTorch's fp32 are other roundings of the weights and drift after a while.
        prefixes = [_common_prefix(ours["token_ids"], theirs["token_ids"])
                    for ours, theirs in zip(edgetune, answers, strict=True)]
        figures["same_tokens_as_edgetune"] = f"{sum(p == new_tokens for p in prefixes)} of {len(prefixes)} answers"
        figures["common_prefix_with_edgetune_tokens"] = prefixes
    if "prompt_ids_match_llama_tokenizer" in answers[0]:
        figures["prompt_ids_match_llama_tokenizer"] = all(a["prompt_ids_match_llama_tokenizer"] for a in answers)
    return figures


def _overhead(runtime: list[dict], bare: list[dict]) -> dict:
    """The runtime against the bare loop on the same prompt in the same round (their turns were adjacent)."""
    pairs = list(zip(runtime, bare, strict=True))
    steps = len(runtime[0]["token_ids"]) - 1
    return {
        "decode_fraction": round(statistics.median((ours["decode_s"] - engine["decode_s"]) / engine["decode_s"]
                                                   for ours, engine in pairs), 4),
        "decode_ms_per_token": round(statistics.median((ours["decode_s"] - engine["decode_s"]) * 1000 / steps
                                                       for ours, engine in pairs), 4),
        "first_token_ms": round(statistics.median(ours["first_token_ms"] - engine["first_token_ms"]
                                                  for ours, engine in pairs), 3),
    }


def check_targets(run: dict) -> dict:
    """Issue 17's targets at one thread: each one's measured value and whether it is met."""
    contestants = run["contestants"]
    ours, llama = contestants.get("edgetune"), contestants.get("llama.cpp")
    measured = {
        "decode_tokens_per_s": ours["decode_tokens_per_s"],
        "decode_vs_llama_cpp": round(ours["decode_tokens_per_s"] / llama["decode_tokens_per_s"], 3) if llama else None,
        "first_token_vs_llama_cpp": round(ours["first_token_p50_ms"] / llama["first_token_p50_ms"], 3)
        if llama else None,
        "peak_rss_mb": ours["peak_rss_mb"],
        "overhead_fraction": (run.get("runtime_overhead") or {}).get("decode_fraction"),
    }

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    met = {
        "decode_vs_llama_cpp": None if measured["decode_vs_llama_cpp"] is None
        else measured["decode_vs_llama_cpp"] >= TARGETS["decode_vs_llama_cpp_min"],
        "decode_tokens_per_s_aim": measured["decode_tokens_per_s"] >= TARGETS["decode_tokens_per_s_aim"],
        "first_token_vs_llama_cpp": at_most(measured["first_token_vs_llama_cpp"],
                                            TARGETS["first_token_vs_llama_cpp_max"]),
        "peak_rss": at_most(measured["peak_rss_mb"], TARGETS["peak_rss_mb_max"]),
        "runtime_overhead": at_most(measured["overhead_fraction"], TARGETS["overhead_fraction_max"]),
    }
    return {"measured": measured, "met": met}


def format_table(runs: list[dict]) -> str:
    lines = [f"{'threads':>7}  {'contestant':<18} {'TTFT p50 ms':>11} {'decode tok/s':>12} {'peak RSS MB':>11} "
             f"{'load s':>7}  same tokens as edgetune"]
    for run in runs:
        for name, figures in run["contestants"].items():
            lines.append(f"{run['threads']:>7}  {name:<18} {figures['first_token_p50_ms']:>11.1f} "
                         f"{figures['decode_tokens_per_s']:>12.1f} {figures['peak_rss_mb'] or float('nan'):>11.1f} "
                         f"{figures['import_and_load_s']:>7.2f}  {figures.get('same_tokens_as_edgetune', '-')}")
        for key, what in (("runtime_overhead", "runtime over its engine's bare loop"),
                          ("plain_runtime_overhead", "plain-loop runtime over the bare onnxruntime loop")):
            overhead = run.get(key)
            if overhead:
                lines.append(f"{'':>7}  {what}: {overhead['decode_fraction']:+.1%} of decode time "
                             f"({overhead['decode_ms_per_token']:+.3f} ms/token), {overhead['first_token_ms']:+.2f} ms "
                             "to the first token")
    return "\n".join(lines)


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((index for index, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _round(value: float) -> float:
    return round(value, 2)


@click.command()
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An int4 chat bundle of the base model. Default: built (once) under --work-dir.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO / "runs" / "chat-runtime-bench", show_default=True)
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=BITEXT,
              show_default=True, help="Bitext CSV (instruction, response, intent) the prompts are drawn from.")
@click.option("--llama-python", type=click.Path(path_type=Path), default=Path("/work/llama-venv/bin/python"),
              show_default=True, help="Python of a virtual environment with llama-cpp-python.")
@click.option("--contestants", default=",".join(CONTESTANTS), show_default=True)
@click.option("--threads", default="1,2", show_default=True)
@click.option("--prompts", type=click.IntRange(1), default=5, show_default=True,
              help="Prompts, from different intents; each contestant answers each once per round.")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True,
              help="Untimed answers per contestant before the timed ones, at each thread count.")
@click.option("--new-tokens", type=click.IntRange(2), default=64, show_default=True)
@click.option("--prompt-tokens", type=click.IntRange(8), default=60, show_default=True,
              help="Prompt length (chat format and system turn included) the prompts are chosen near.")
@click.option("--name", default="chat_runtime", show_default=True, help="Result file name under benchmarks/results.")
def main(bundle: Path | None, work_dir: Path, data: Path, llama_python: Path, contestants: str, threads: str,
         prompts: int, rounds: int, warmup: int, new_tokens: int, prompt_tokens: int, name: str) -> None:
    from edgetune.models.gguf_dir import resolve_model_directory
    from edgetune.models.resolve import resolve_model
    from edgetune_runtime.atomic_write import write_json_atomic
    from edgetune_runtime.envelope import Bundle

    chosen = [contestant.strip() for contestant in contestants.split(",") if contestant.strip()]
    unknown = [contestant for contestant in chosen if contestant not in CONTESTANTS]
    if unknown or not chosen:
        raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(CONTESTANTS)}",
                                 param_hint="--contestants")
    if "llama.cpp" in chosen and not llama_python.exists():
        raise click.BadParameter(f"{llama_python} does not exist: `python -m venv /work/llama-venv && "
                                 "/work/llama-venv/bin/pip install llama-cpp-python`, or leave llama.cpp out of "
                                 "--contestants", param_hint="--llama-python")
    thread_counts = [int(value) for value in threads.split(",")]

    bundle_dir = bundle or ensure_bundle(work_dir, data)
    gguf = resolve_model(MODEL)
    gguf_path = gguf.path / gguf.gguf_file
    pytorch_dir = resolve_model_directory(MODEL).path
    probe = Bundle.load(bundle_dir, intra_op_threads=1)
    requests = timing_requests(probe, data, prompts, new_tokens, prompt_tokens)
    print("prompt tokens: " + ", ".join(str(len(request["prompt_ids"])) for request in requests), file=sys.stderr)
    here = Path(sys.executable)
    models = {"edgetune": (here, bundle_dir), "bare-engine": (here, bundle_dir), "edgetune-plain": (here, bundle_dir),
              "bare-onnxruntime": (here, bundle_dir), "onnxruntime-genai": (here, bundle_dir),
              "llama.cpp": (llama_python, gguf_path), "pytorch-fp32": (here, pytorch_dir)}
    models = {contestant: models[contestant] for contestant in chosen}

    cpu_before, load_before = cpu_times(), os.getloadavg()
    started = time.perf_counter()
    runs = [run_threads(count, models, requests, rounds, warmup, work_dir / "logs") for count in thread_counts]
    wall_s = time.perf_counter() - started
    print(format_table(runs), flush=True)

    one_thread = next((run for run in runs if run["threads"] == 1), None)
    targets = check_targets(one_thread) if one_thread and "edgetune" in one_thread["contestants"] else None
    manifest = probe.manifest
    result = {
        "benchmark": name,
        "model": MODEL,
        "artifacts": {
            "bundle": str(Path(bundle_dir).resolve()),
            "bundle_mb": round(sum((Path(bundle_dir) / file).stat().st_size for file in manifest["files"]) / 2**20, 2),
            "bundle_variant": (manifest.get("tuned_for") or {}).get("variant"),
            "context_length": probe.context_length,
            "gguf": str(gguf_path), "gguf_mb": round(gguf_path.stat().st_size / 2**20, 2),
            "pytorch_dir": str(pytorch_dir),
        },
        "prompts": [{"where": request["where"], "prompt_tokens": len(request["prompt_ids"])} for request in requests],
        "new_tokens": new_tokens, "rounds": rounds, "warmup": warmup,
        "method": __doc__.split("\n\n")[2].replace("\n", " "),
        "peak_rss_how": PEAK_RSS_HOW,
        "runs": runs,
        "targets": TARGETS,
        "targets_at_1_thread": targets,
        "wall_time_s": round(wall_s, 1),
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
        # Other jobs may share this machine: ratios measured in turns survive that, absolute figures less so.
        "load_average_1_5_15": {"start": [round(v, 2) for v in load_before],
                                "end": [round(v, 2) for v in os.getloadavg()]},
    } | run_context()
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, result)
    print(f"wrote {path.relative_to(REPO)}", file=sys.stderr)
    print(json.dumps({"targets_at_1_thread": targets, "wall_time_s": result["wall_time_s"],
                      "cpu_steal_fraction": result["cpu_steal_fraction"]}))


if __name__ == "__main__":
    main()
