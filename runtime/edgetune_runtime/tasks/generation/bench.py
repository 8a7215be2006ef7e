"""`edgetune-runtime bench` for a text-generation bundle: how fast a chat model answers on this device.

For each thread count: load time; time to first token of short, medium and long prompts
(`bench_prompts.py` says how they are made, and the result records their token counts); greedy
decode speed and inter-token latency over a fixed count of new tokens (stop tokens cannot end an
answer early: `min_new_tokens`), timed in shuffled turns with the engine's bare loop on the same
prompt ids (onnxruntime-genai's own generator loop on the same model, or for the plain engine
`session.run` with a numpy cache and argmax), so the runtime's own cost (tokenising, streaming,
stop strings, result objects) shows as overhead over the engine. Once: cold start (a fresh process
to its first token), peak memory, the bundle's size and, with reference answers in the prompts
file, their perplexity (teacher-forced, answer tokens only) and the ROUGE-L of greedy answers (where
rouge_score is installed); with intent labels and a judge bundle (a classifier of answers into
intents), intent fidelity: the share of greedy answers the judge reads as serving the prompt's
intent. The result is the same JSON family as classification's (`edgetune_runtime.bench`), merged by
`edgetune report`.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy

from edgetune_runtime.bench import ResultFile, describe_device, pin_cores
from edgetune_runtime.cold_start import peak_rss_mb, time_cold_starts
from edgetune_runtime.errors import BundleError, InputError
from edgetune_runtime.tasks import TaskBench
from edgetune_runtime.tasks.generation.bench_prompts import (
    LENGTHS,
    BenchPrompt,
    TimedPrompt,
    golden_bench_prompts,
    prompts_by_length,
    read_bench_prompts,
)
from edgetune_runtime.tasks.generation.bundle import GenerationBundle
from edgetune_runtime.tasks.generation.decoder import Decoder
from edgetune_runtime.tasks.generation.genai_engine import ENGINES, GenaiEngine
from edgetune_runtime.tasks.generation.reference_scores import (
    answer_nll,
    fidelity_share,
    judged_intents,
    rouge_l_scorer,
)
from edgetune_runtime.timing import interleaved_timings

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}


@dataclass(frozen=True)
class GenerationBenchConfig:
    """What the bench of a chat bundle measures and how."""

    data: str | None = None
    """Prompts (JSONL with `messages` or a prompt column, CSV/TSV, or .txt); default: the bundle's golden prompts."""
    prompt_column: str | None = None
    """Column holding the prompt; found by common names (prompt, instruction, text, ...) when left out."""
    reference_column: str | None = None
    """Column holding the reference answer, for perplexity and ROUGE-L; found by name (response, ...) when left out."""
    intent_column: str | None = None
    """Column holding each prompt's intent label, for intent fidelity; found by name (intent, label, category)."""
    judge: str | None = None
    """A classification bundle that reads an answer and names its intent: greedy answers are judged against the
    prompts' intent labels (intent fidelity)."""
    engine: str = "auto"
    """What decodes: onnxruntime-genai, onnxruntime (the plain loop) or auto (the runtime's default)."""
    threads: tuple[int, ...] = (1,)
    """ONNX Runtime intra-op thread counts to sweep (0: ONNX Runtime chooses)."""
    new_tokens: int = 64
    """Tokens decoded per timed answer, every time (stop tokens cannot end it earlier)."""
    prompts_per_length: int = 5
    """Prompts timed at each length (short, medium, long); decode speed is timed on the short ones."""
    long_prompt_tokens: int | None = None
    """Cap of the long prompts in tokens (default: all the context leaves beside --new-tokens)."""
    limit: int = 200
    """Read at most this many prompts of the file (they are held in memory)."""
    quality_rows: int = 32
    """Rows with a reference answer scored for perplexity and ROUGE-L (0 skips the quality figures)."""
    pin_cores: tuple[int, ...] | None = None
    """Run on these CPU cores only (Linux and Android); the cold-start processes inherit it."""
    warmup: int = 1
    """Untimed rounds before each timed setting (first calls allocate buffers and fill caches)."""
    cold_starts: int = 3
    """Fresh processes to time from their start to their first token; the median is reported (0 skips it)."""
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """ONNX Runtime execution providers, in order of preference."""
    name: str | None = None
    """What merged reports call this bundle (default: its folder or zip name), e.g. `smollm2-int4`."""

    def __post_init__(self) -> None:
        if not self.threads or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in self.threads):
            raise InputError(f"--threads: {', '.join(map(str, self.threads)) or 'nothing'}: give whole numbers >= 0")
        if self.pin_cores is not None and (not self.pin_cores or any(core < 0 for core in self.pin_cores)):
            raise InputError("--pin-cores: give core numbers >= 0, e.g. 0 or 0,1")
        for name, lowest in (("new_tokens", 2), ("prompts_per_length", 1), ("limit", 1), ("quality_rows", 0),
                             ("warmup", 0), ("cold_starts", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                raise InputError(f"--{name.replace('_', '-')}: {value!r} must be a whole number >= {lowest}")
        if self.engine not in ENGINES:
            raise InputError(f"--engine: {self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.long_prompt_tokens is not None and self.long_prompt_tokens < 2:
            raise InputError(f"--long-prompt-tokens: {self.long_prompt_tokens} must be at least 2")


@dataclass
class FirstToken:
    """Time to first token at one prompt length."""

    prompt_tokens: list[int]
    """Token count of each prompt timed (system turn and chat format included)."""
    p50_ms: float
    p90_ms: float


@dataclass
class GenerationBenchRun:
    """One thread count."""

    threads: int
    load_s: float
    first_token: dict[str, FirstToken]
    """By prompt length: short, medium, long."""
    new_tokens: int
    """Tokens decoded per timed answer."""
    decode_tokens_per_s: float
    """Median over the short prompts of (new tokens - 1) / (last token - first token)."""
    inter_token_p50_ms: float
    inter_token_p90_ms: float
    inter_token_p99_ms: float
    bare_decode_tokens_per_s: float
    """The same prompt ids decoded by the engine's bare loop, timed in turns: onnxruntime-genai's generator alone
    (generate_next_token, get_next_tokens), or for the plain engine session.run with a numpy cache and argmax."""
    overhead_fraction: float
    """Median over prompts of (runtime decode time - bare decode time) / bare decode time."""
    overhead_ms_per_token: float


@dataclass
class GenerationBenchResult(ResultFile):
    device: dict
    bundle: dict
    data: dict
    command: list[str]
    cold_start: dict | None
    peak_rss_mb: float | None
    quality: dict | None
    engine: dict = field(default_factory=dict)
    """What decoded: {"name": "onnxruntime-genai" or "onnxruntime", "version": ..., "chosen_as": the --engine asked}."""
    runs: list[GenerationBenchRun] = field(default_factory=list)
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def bench(bundle_path: str | Path, config: GenerationBenchConfig, *, command: list[str] | None = None,
          progress: Callable[[str], None] | None = None) -> GenerationBenchResult:
    """Benchmark the chat bundle at `bundle_path` on this device; see the module docstring."""
    progress = progress or (lambda message: None)
    bundle_path = Path(bundle_path)
    previous_affinity = pin_cores(config.pin_cores) if config.pin_cores is not None else None
    try:
        # A bundle of another task is refused in one line, after its checks.
        probe = GenerationBundle.load(bundle_path, intra_op_threads=config.threads[0], providers=config.providers,
                                      engine=config.engine)
        if config.data is not None:
            prompts = read_bench_prompts(config.data, config.limit, config.prompt_column, config.reference_column,
                                         config.intent_column)
            source = str(Path(config.data).resolve())
        else:
            prompts, source = golden_bench_prompts(probe), "golden prompts of the bundle"
        # Checked before any timing, so a judge that cannot judge these prompts fails at once.
        judge = _load_judge(config.judge, prompts) if config.judge is not None else None
        by_length = prompts_by_length(probe, prompts, config.prompts_per_length, config.new_tokens,
                                      config.long_prompt_tokens)
        progress(f"{len(prompts)} prompts from {source}; prompt tokens " + ", ".join(
            f"{length} {_median_tokens(by_length[length])}" for length in LENGTHS))
        labelled = [prompt for prompt in prompts
                    if prompt.reference is not None or (judge is not None and prompt.intent is not None)]
        labelled = labelled[:config.quality_rows]
        quality = _quality(probe, labelled, config.new_tokens, progress, judge) if labelled else None
        if quality is not None and judge is not None:
            quality["judge"] = str(Path(config.judge).resolve())
        cold_start = None
        if config.cold_starts:
            progress(f"cold start: {config.cold_starts} fresh processes")
            cold_start = time_cold_starts(bundle_path, prompts[0].user_text, config.threads[0], config.cold_starts,
                                          task_options={"engine": probe.engine})
        result = GenerationBenchResult(
            device=describe_device(probe), bundle=_describe_bundle(bundle_path, probe, config.name),
            data={"path": source, "prompts": len(prompts), "labelled": sum(p.reference is not None for p in prompts),
                  "intent_labelled": sum(p.intent is not None for p in prompts)},
            command=command if command is not None else list(sys.argv), cold_start=cold_start, peak_rss_mb=None,
            quality=quality, engine=_describe_engine(probe, config.engine))
        del probe, judge
        for threads in config.threads:
            started = time.perf_counter()
            bundle = GenerationBundle.load(bundle_path, intra_op_threads=threads, providers=config.providers,
                                           engine=config.engine)
            load_s = round(time.perf_counter() - started, 4)
            progress(f"threads {threads}: first token at 3 prompt lengths, {config.new_tokens} new tokens on "
                     f"{config.prompts_per_length} prompts beside {bundle.engine}'s bare loop")
            result.runs.append(_run(bundle, threads, load_s, by_length, config))
            del bundle
        result.peak_rss_mb = peak_rss_mb()
        return result
    finally:
        if previous_affinity is not None:
            os.sched_setaffinity(0, previous_affinity)


def _median_tokens(prompts: list[TimedPrompt]) -> int:
    return int(statistics.median(len(prompt.prompt_ids) for prompt in prompts))


def _run(bundle: GenerationBundle, threads: int, load_s: float, by_length: dict[str, list[TimedPrompt]],
         config: GenerationBenchConfig) -> GenerationBenchRun:
    first_token_ms: dict[str, list[float]] = {length: [] for length in LENGTHS}

    def first_token(length: str) -> Callable[[int], None]:
        def call(index: int) -> None:
            answer = bundle.generate(by_length[length][index].conversation, max_new_tokens=1, truncate=True, **GREEDY)
            first_token_ms[length].append(answer.first_token_ms)
        return call

    count = config.prompts_per_length
    interleaved_timings({length: first_token(length) for length in LENGTHS}, count, warmup=config.warmup)
    first = {length: FirstToken([len(prompt.prompt_ids) for prompt in by_length[length]],
                                _percentile(first_token_ms[length][-count:], 50),
                                _percentile(first_token_ms[length][-count:], 90)) for length in LENGTHS}

    short, new_tokens = by_length["short"], config.new_tokens
    runtime_s: list[float] = []
    bare_s: list[float] = []
    gaps_ms: list[float] = []

    def runtime(index: int) -> None:
        answer = bundle.generate(short[index].conversation, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 truncate=True, **GREEDY)
        if len(answer.token_ids) != new_tokens:  # only a full context ends it early, and the prompts leave room
            raise InputError(f"decoded {len(answer.token_ids)} of {new_tokens} tokens; lower --new-tokens")
        runtime_s.append(sum(answer.inter_token_ms) / 1000)
        gaps_ms.extend(answer.inter_token_ms)

    def bare(index: int) -> None:
        if bundle.genai is not None:
            bare_s.append(bare_genai_decode_seconds(bundle.genai, short[index].prompt_ids, new_tokens))
        else:
            bare_s.append(bare_decode_seconds(bundle.decoder, short[index].prompt_ids, new_tokens))

    interleaved_timings({"runtime": runtime, "bare": bare}, count, warmup=config.warmup)
    runtime_s, bare_s = runtime_s[-count:], bare_s[-count:]  # the warm-up rounds went first
    gaps_ms = gaps_ms[-count * (new_tokens - 1):]
    steps = new_tokens - 1
    return GenerationBenchRun(
        threads=threads, load_s=load_s, first_token=first, new_tokens=new_tokens,
        decode_tokens_per_s=round(statistics.median(steps / seconds for seconds in runtime_s), 2),
        inter_token_p50_ms=_percentile(gaps_ms, 50), inter_token_p90_ms=_percentile(gaps_ms, 90),
        inter_token_p99_ms=_percentile(gaps_ms, 99),
        bare_decode_tokens_per_s=round(statistics.median(steps / seconds for seconds in bare_s), 2),
        overhead_fraction=round(statistics.median(
            (ours - engine) / engine for ours, engine in zip(runtime_s, bare_s, strict=True)), 4),
        overhead_ms_per_token=round(statistics.median(
            (ours - engine) * 1000 / steps for ours, engine in zip(runtime_s, bare_s, strict=True)), 4))


def bare_decode_seconds(decoder: Decoder, prompt_ids: list[int], new_tokens: int) -> float:
    """Seconds from the first new token to the last of a bare greedy loop: `session.run` on the prompt, then on
    each chosen token with the numpy KV cache, argmax, nothing else. The engine's floor, not a second decoder:
    it neither stops, samples nor detokenises."""
    layout, session = decoder.layout, decoder.session
    names = decoder.output_names
    logits_index = names.index(layout.logits)
    presents = [(layout.past_key % layer, names.index(layout.present_key % layer)) for layer in range(layout.layers)]
    presents += [(layout.past_value % layer, names.index(layout.present_value % layer))
                 for layer in range(layout.layers)]
    feeds = dict(decoder.new_cache().arrays)
    length = len(prompt_ids)
    feeds[layout.input_ids] = numpy.asarray([prompt_ids], dtype=numpy.int64)
    feeds[layout.attention_mask] = numpy.ones((1, length), numpy.int64)
    if layout.position_ids:
        feeds[layout.position_ids] = numpy.arange(length, dtype=numpy.int64).reshape(1, -1)
    outputs = session.run(None, feeds)
    token = int(numpy.argmax(outputs[logits_index][0, -1]))
    started = time.perf_counter()
    for _ in range(new_tokens - 1):
        for past, index in presents:
            feeds[past] = outputs[index]
        feeds[layout.input_ids] = numpy.asarray([[token]], dtype=numpy.int64)
        feeds[layout.attention_mask] = numpy.ones((1, length + 1), numpy.int64)
        if layout.position_ids:
            feeds[layout.position_ids] = numpy.asarray([[length]], dtype=numpy.int64)
        length += 1
        outputs = session.run(None, feeds)
        token = int(numpy.argmax(outputs[logits_index][0, -1]))
    return time.perf_counter() - started


def bare_genai_decode_seconds(engine: GenaiEngine, prompt_ids: list[int], new_tokens: int) -> float:
    """Seconds from the first new token to the last of onnxruntime-genai's own greedy loop on the same model
    (`generate_next_token`, `get_next_tokens`, nothing else): the floor of the runtime on that engine."""
    generator = engine.generator(prompt_ids, max_length=len(prompt_ids) + new_tokens,
                                 min_length=len(prompt_ids) + new_tokens)
    generator.generate_next_token()
    generator.get_next_tokens()
    started = time.perf_counter()
    for _ in range(new_tokens - 1):
        generator.generate_next_token()
        generator.get_next_tokens()
    return time.perf_counter() - started


def _load_judge(path: str, prompts: list[BenchPrompt]):
    """The judge bundle (a classifier of answers into intents), checked against the prompts' intent labels."""
    from edgetune_runtime.tasks.classification import ClassificationBundle

    judged = [prompt for prompt in prompts if prompt.intent is not None]
    if not judged:
        raise InputError("--judge: the prompts carry no intent labels to judge answers against; pass --data with an "
                         "intent column (found by name: intent, label, category) or name it with --intent-column")
    try:
        judge = ClassificationBundle.load(path, intra_op_threads=1)
    except BundleError as error:
        raise BundleError(f"--judge: {error}") from None
    known = set(judge.labels)
    unknown = next((prompt for prompt in judged if prompt.intent not in known), None)
    if unknown is not None:
        raise InputError(f"{unknown.where}: intent {unknown.intent!r} is not one of the judge's {len(known)} labels "
                         f"({path}); use the judge trained on this data's intents")
    return judge


def _quality(bundle: GenerationBundle, labelled: list[BenchPrompt], new_tokens: int,
             progress: Callable[[str], None], judge=None) -> dict:
    """Perplexity of the reference answers (pooled over their tokens, as in training), mean ROUGE-L F of greedy
    answers against them and, with a judge, intent fidelity of greedy answers to prompts with an intent label."""
    scorer = rouge_l_scorer()
    referenced = [prompt for prompt in labelled if prompt.reference is not None]
    judged = [prompt for prompt in labelled if judge is not None and prompt.intent is not None]
    progress(f"quality: {len(referenced)} reference answers (perplexity"
             f"{', ROUGE-L of greedy answers' if scorer else ''})"
             + (f", intent fidelity of {len(judged)} greedy answers" if judge is not None else ""))
    nll, tokens, rouge, intents, answers = 0.0, 0, [], [], []
    for prompt in labelled:
        answer = None
        if (scorer is not None and prompt.reference is not None) or (judge is not None and prompt.intent is not None):
            answer = bundle.generate(prompt.conversation, max_new_tokens=new_tokens, truncate=True, **GREEDY)
        if prompt.reference is not None:
            try:
                prompt_ids, answer_ids = bundle.reference_ids(prompt.conversation, prompt.reference)
            except InputError as error:
                raise InputError(f"{prompt.where}: {error}") from None
            row_nll, row_tokens = answer_nll(bundle.decoder.sequence_logits(prompt_ids + answer_ids),
                                             len(prompt_ids), answer_ids)
            nll, tokens = nll + row_nll, tokens + row_tokens
            if scorer is not None:
                rouge.append(scorer(prompt.reference, answer.text.strip()))
        if judge is not None and prompt.intent is not None:
            intents.append(prompt.intent)
            answers.append(answer.text.strip())
    fidelity = fidelity_share(judged_intents(judge, answers), intents) if intents else None
    return {"rows": len(referenced), "reference_tokens": tokens,
            "perplexity": round(math.exp(nll / tokens), 4) if tokens and nll / tokens < 700 else None,
            "rouge_l": round(statistics.fmean(rouge), 4) if rouge else None, "answer_tokens": new_tokens,
            "intent_fidelity": None if fidelity is None else round(fidelity, 4), "judged_rows": len(intents),
            "judge": None,
            "note": None if scorer or not referenced
            else "rouge_score is not installed here: ROUGE-L skipped (pip install rouge-score)"}


def _describe_engine(bundle: GenerationBundle, asked: str) -> dict:
    if bundle.genai is not None:
        version = GenaiEngine.version()
    else:
        import onnxruntime

        version = onnxruntime.__version__
    return {"name": bundle.engine, "version": version, "chosen_as": asked}


def _describe_bundle(path: Path, bundle: GenerationBundle, name: str | None) -> dict:
    manifest = bundle.manifest
    size = sum((bundle.directory / file).stat().st_size for file in manifest["files"])
    tuned_for = manifest.get("tuned_for") or {}
    return {"path": str(path.resolve()), "name": name or (path.stem if path.is_file() else path.name),
            "task": manifest["task"], "format_version": manifest["format_version"],
            "model_sha256": manifest["files"][manifest["model"]],
            "size_mb": round(size / 2**20, 2), "variant": tuned_for.get("variant"), "tuned_for": tuned_for,
            "context_length": bundle.context_length, "manifest_metrics": manifest.get("metrics")}


def _percentile(values: list[float], q: float) -> float:
    return round(float(numpy.percentile(values, q)), 4)


def format_table(result: GenerationBenchResult) -> str:
    """The runs as a fixed-width table, with cold start, memory and quality below it."""
    lengths = " ".join(f"{'TTFT ' + length[0].upper() + ' ms':>11}" for length in LENGTHS)
    lines = [f"{'threads':>7} {lengths} {'tok/s':>7} {'ITL p50':>8} {'ITL p90':>8} {'ITL p99':>8} {'load s':>7}"
             "  runtime overhead"]
    for run in result.runs:
        firsts = " ".join(f"{run.first_token[length].p50_ms:>11.1f}" for length in LENGTHS)
        lines.append(f"{run.threads:>7} {firsts} {run.decode_tokens_per_s:>7.1f} {run.inter_token_p50_ms:>8.2f} "
                     f"{run.inter_token_p90_ms:>8.2f} {run.inter_token_p99_ms:>8.2f} {run.load_s:>7.3f}  "
                     f"{run.overhead_fraction:+.1%} ({run.overhead_ms_per_token:+.3f} ms/token) vs bare "
                     f"{result.engine.get('name', 'engine')} {run.bare_decode_tokens_per_s:.1f} tok/s")
    if result.runs:
        run = result.runs[0]
        lines.append("prompt tokens (median): " + ", ".join(
            f"{length} {int(statistics.median(run.first_token[length].prompt_tokens))}" for length in LENGTHS)
            + f"; {run.new_tokens} new tokens per timed answer (TTFT: time to first token, p50; ITL: inter-token)")
    device = result.device
    lines.append(f"device: {device['cpu_model']}, {device['usable_cores']} usable cores, "
                 f"{' '.join(device['isa_flags']) or 'no listed ISA flags'}; onnxruntime {device['onnxruntime']} "
                 f"({device['execution_provider']}); decoded by {result.engine.get('name')} "
                 f"{result.engine.get('version')}")
    if result.cold_start:
        cold = result.cold_start
        lines.append(f"cold start (process start to first token): {cold['median_s']:.3f} s median of "
                     f"{len(cold['runs_s'])} (imports {cold['import_s']:.3f} s, load {cold['load_s']:.3f} s); "
                     f"peak RSS {cold['peak_rss_mb']} MB")
    lines.append(f"bundle {result.bundle['size_mb']:.2f} MB; peak RSS of this benchmark {result.peak_rss_mb} MB")
    quality = result.quality
    if quality and quality["rows"]:
        rouge = f"ROUGE-L {quality['rouge_l']:.4f}" if quality["rouge_l"] is not None else quality["note"]
        lines.append(f"quality on {quality['rows']} reference answers: perplexity {quality['perplexity']}; {rouge}")
    if quality and quality.get("intent_fidelity") is not None:
        lines.append(f"intent fidelity: {quality['intent_fidelity']:.1%} of {quality['judged_rows']} greedy answers "
                     f"judged to serve the prompt's intent (judge {quality['judge']})")
    return "\n".join(lines)


TASK_BENCH = TaskBench(GenerationBenchConfig, bench, format_table)
