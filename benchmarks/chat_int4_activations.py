"""Benchmark: on a quantisation-aware chat model, what do int4's int8 activations cost, in tokens and in speed?

A `quant_aware: int4-block32` model's weights already sit on the int4 grid, so its int4 export holds the
fp32 model's weights exactly; what still differs is the activations: accuracy level 4 (what the shipped
variant uses) quantises them to int8 per block for the VNNI kernels, level 1 keeps them in fp32. This
builds the level-1 graph beside the run's level-4 one and decodes the same held-out test prompts greedily
with PyTorch (the fp32 model), and with onnxruntime-genai on both graphs (one thread, alternating turns),
reporting how many answers equal PyTorch's token for token, where the others first differ, and decode
tokens/s.

    python benchmarks/chat_int4_activations.py [--run-dir runs/support_chat-bench --prompts 12]
"""

from __future__ import annotations

import json
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
NEW_TOKENS = 96


def _genai_model(path: Path):
    import onnxruntime_genai as og

    config = og.Config(str(path))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": 1}}}}))
    return og.Model(config)


def _genai_greedy(model, prompt_ids: list[int]) -> tuple[list[int], float]:
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + NEW_TOKENS, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    tokens, times = [], []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
        times.append(time.perf_counter())
    return tokens, (len(tokens) - 1) / (times[-1] - times[0]) if len(tokens) > 1 else 0.0


def _first_difference(reference: list[int], tokens: list[int]) -> int | None:
    """Index of the first token that differs; None when the answers are equal."""
    if reference == tokens:
        return None
    return next((index for index, (a, b) in enumerate(zip(reference, tokens, strict=False)) if a != b),
                min(len(reference), len(tokens)))


@click.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs/support_chat-bench"), show_default=True,
              help="A finished support_chat run (quantisation-aware finetune, int4 and evaluate stages).")
@click.option("--prompts", default=12, show_default=True, help="Held-out test prompts to decode.")
@click.option("--name", default="chat_int4_activations", show_default=True,
              help="Result file under benchmarks/results.")
def main(run_dir: Path, prompts: int, name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    latest = (REPO / run_dir / "latest").resolve()
    finetuned, level4 = (latest / "finetune").resolve(), (latest / "int4").resolve()
    quant_aware = json.loads((finetuned / "edgetune.json").read_text())["config"].get("quant_aware", "off")
    if quant_aware != "int4-block32":
        raise click.ClickException(f"{finetuned}: quant_aware is {quant_aware!r}; run recipes/support_chat.yaml first")
    level1 = REPO / "runs" / "chat-int4-activations" / "int4-level1"
    if not (level1 / "model.onnx").is_file():
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(finetuned), "-o",
                        str(level1), "-p", "int4", "-e", "cpu", "--extra_options", "int4_accuracy_level=1",
                        "int4_block_size=32", "int4_op_types_to_quantize=MatMul/Gather", "shared_embeddings=false"],
                       check=True, capture_output=True)
    rows = [json.loads(line) for line in (latest / "evaluate" / "generations.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(finetuned)
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(finetuned, dtype=torch.float32).eval()
    graphs = {"int8-activations (level 4, shipped)": _genai_model(level4),
              "fp32-activations (level 1)": _genai_model(level1)}
    outcome = {graph: {"first_difference": [], "tokens_per_s": []} for graph in graphs}
    started_cpu, started = cpu_times(), time.perf_counter()
    for index, row in enumerate(rows[:prompts]):
        prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                                   add_generation_prompt=True)
        with torch.no_grad():
            reference = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids),
                                       dtype=torch.long), max_new_tokens=NEW_TOKENS, do_sample=False,
                                       eos_token_id=tokenizer.eos_token_id)[0, len(prompt_ids):].tolist()
        order = list(graphs) if index % 2 == 0 else list(reversed(graphs))  # alternating turns
        for graph in order:
            tokens, speed = _genai_greedy(graphs[graph], prompt_ids)
            outcome[graph]["first_difference"].append(_first_difference(reference, tokens))
            outcome[graph]["tokens_per_s"].append(round(speed, 1))
    summary = {graph: {"equal_to_pytorch": sum(d is None for d in figures["first_difference"]),
                       "prompts": len(figures["first_difference"]),
                       "decode_tokens_per_s_median": statistics.median(figures["tokens_per_s"]), **figures}
               for graph, figures in outcome.items()}
    result = {"benchmark": name, "run_dir": str(run_dir), "new_tokens": NEW_TOKENS, "threads": 1,
              "results": summary, "wall_time_s": round(time.perf_counter() - started, 1),
              "cpu_steal_fraction": steal_fraction(started_cpu, cpu_times())} | run_context()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    for graph, figures in summary.items():
        print(f"{graph}: {figures['equal_to_pytorch']}/{figures['prompts']} answers equal PyTorch's "
              f"{NEW_TOKENS} greedy tokens; {figures['decode_tokens_per_s_median']} tokens/s")


if __name__ == "__main__":
    main()
