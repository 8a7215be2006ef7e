"""Benchmark: distillation on Banking77 against fine-tuning the same student alone, at equal budget.

Students are all-MiniLM-L6-v2 whole (6 layers) and cut to 3 layers (0,2,4, DistilBERT-style); each
is (a) fine-tuned alone and (b) distilled from the teacher, with the same epochs, learning rate,
label smoothing and seed. Every student is then exported and quantised (dynamic int8, per channel)
as a user would (`edgetune export`, `edgetune quantize`) and scored on the Banking77 test split:
accuracy, size and batch-1 one-thread latency, the students taking turns on each text so machine
noise lands on all alike. Writes one JSON per training run and benchmarks/results/<name>.json.

    python benchmarks/distill_banking77.py --teacher runs/x/teacher --run plain-3 --run distilled-3 \\
        --reference plain-6=runs/bench-v2/all-MiniLM-L6-v2-full

A run whose output directory already exists is reused (pass --retrain to train it again), so the
benchmark can be built up in pieces on a busy machine.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgetune.data.config import DataConfig  # noqa: E402
from edgetune.distill.config import DistillConfig  # noqa: E402
from edgetune.finetune.config import FinetuneConfig  # noqa: E402
from environment import cpu_times, run_context, steal_fraction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BANKING77 = REPO.parent / "shared" / "data" / "banking77"
RESULTS = REPO / "benchmarks" / "results"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"
RUNS = {  # name: (layers kept of the student, distilled?)
    "plain-3": (3, False), "distilled-3": (3, True), "plain-6": (None, False), "distilled-6": (None, True),
}
INT8_VARIANT = "dynamic-int8-per-channel"


@click.command()
@click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False),
              help="Fine-tuned teacher directory (an edgetune finetune output on Banking77).")
@click.option("--run", "runs", type=click.Choice(list(RUNS)), multiple=True, required=True,
              help="Students to train (or reuse) and measure.")
@click.option("--reference", "references", multiple=True,
              help="NAME=DIR: an already trained student to measure beside them, e.g. plain-6=runs/.../minilm.")
@click.option("--epochs", type=float, default=8, show_default=True)
@click.option("--learning-rate", type=float, default=3e-4, show_default=True)
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--temperature", type=float, default=2.0, show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True)
@click.option("--augment-copies", type=int, default=0, show_default=True,
              help="Perturbed copies of each training text the teacher labels (distilled runs only).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--latency-texts", type=int, default=1000, show_default=True)
@click.option("--runs-dir", type=click.Path(file_okay=False), default=str(REPO / "runs" / "distill-bench"),
              show_default=True)
@click.option("--retrain", is_flag=True, help="Train runs again even when their output exists.")
@click.option("--name", default="distill_banking77", show_default=True)
@click.option("--int8-variant", default=INT8_VARIANT, show_default=True,
              help="The quantisation variant every student is measured in (any `edgetune quantize` variant), "
                   "or `auto`: each student in the variant `edgetune quantize --auto` chooses on validation.")
def main(teacher, runs, references, epochs, learning_rate, label_smoothing, temperature, alpha, augment_copies,
         seed, latency_texts, runs_dir, retrain, name, int8_variant) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edgetune").setLevel(logging.INFO)
    data = DataConfig(train=str(BANKING77 / "train.csv"), test=str(BANKING77 / "test.csv"))
    runs_dir = Path(runs_dir)
    students: dict[str, Path] = {}
    for reference in references:
        label, _, directory = reference.partition("=")
        students[label] = Path(directory)
    for run in runs:
        num_layers, distilled = RUNS[run]
        student = FinetuneConfig(model=STUDENT, num_layers=num_layers, epochs=epochs, learning_rate=learning_rate,
                                 label_smoothing=label_smoothing, freeze_embeddings=True, seed=seed)
        output = runs_dir / run
        if retrain or not output.exists():
            distillation = DistillConfig(teacher=teacher, student=student, temperature=temperature, alpha=alpha,
                                         augment_copies=augment_copies) if distilled else None
            _train(run, data, student, distillation, output, name)
        students[run] = output

    rows = _measure(students, runs_dir / "int8", latency_texts, int8_variant)
    summary = _summary(rows, Path(teacher), name, int8_variant)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'student':<14}{'layers':>7}{'test fp32':>11}{'test int8':>11}{'int8 MB':>9}{'p50 ms':>9}{'p90 ms':>9}")
    for label, row in rows.items():
        print(f"{label:<14}{row['layers']:>7}{row['test_accuracy_fp32']:>11.2%}{row['test_accuracy_int8']:>11.2%}"
              f"{row['int8_size_mb']:>9.1f}{row['int8_p50_ms']:>9.2f}{row['int8_p90_ms']:>9.2f}")
    print(json.dumps({"comparisons": summary["comparisons"], "targets_met": summary["targets_met"]}))


def _train(run: str, data: DataConfig, student: FinetuneConfig, distillation: DistillConfig | None, output: Path,
           name: str) -> None:
    from edgetune.distill.train import distill
    from edgetune.finetune.train import finetune

    cpu_before = cpu_times()
    if distillation:
        result = distill(data, distillation, output, force=True)
    else:
        result = finetune(data, student, output, force=True)
    manifest = json.loads((output / "edgetune.json").read_text())
    row = {
        "benchmark": "distill_banking77_training",
        "run": run,
        "student": student.model,
        "test_accuracy": round(result.metrics["test"]["accuracy"], 4),
        "test_macro_f1": round(result.metrics["test"]["macro_f1"], 4),
        "validation_accuracy": round(result.metrics["validation"]["accuracy"], 4),
        "wall_time_s": round(result.wall_time_s, 1),
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
        "training": manifest["training"],
        "config": manifest["config"],
        "distillation": manifest.get("distillation"),
    } | run_context()
    # Named after the benchmark run too, so runs with other teachers or settings keep their own records.
    (RESULTS / f"{name}_{run}.json").write_text(json.dumps(row, indent=2) + "\n")


def _measure(students: dict[str, Path], work: Path, latency_texts: int, variant: str) -> dict[str, dict]:
    """Export and quantise each student, then score and time the int8 graphs side by side."""
    from transformers import AutoConfig

    from edgetune.export.config import ExportConfig
    from edgetune.export.heldout import heldout_split
    from edgetune.export.onnx_export import export_onnx
    from edgetune.export.parity import encode_batches
    from edgetune.onnx_session import predict_logits, session_for
    from edgetune.quantize.config import QuantizeConfig
    from edgetune.quantize.evaluate import interleaved_batch1_latency_ms
    from edgetune.quantize.run import quantize

    rows, sessions, batches = {}, {}, {}
    for label, model_dir in students.items():
        started = time.perf_counter()
        export_onnx(model_dir, work / label / "onnx", ExportConfig(), force=True)
        if variant == "auto":  # what `edgetune quantize --auto` ships: chosen on validation, within budget
            config = QuantizeConfig(auto=True)
        else:
            # Every student in the same variant, whatever it costs in accuracy: this benchmark reports each
            # one's int8 test accuracy itself, so quantize's budget (a selection rule) is switched off.
            config = QuantizeConfig(variants=(variant,), keep=variant, latency_texts=20, max_accuracy_drop=100.0)
        chosen = quantize(work / label / "onnx", work / label / "int8", config, force=True)
        graph = work / label / "int8" / "model.onnx"
        manifest = json.loads((model_dir / "edgetune.json").read_text())
        texts, labels = heldout_split(model_dir, "test")
        label_names = manifest["labels"]
        tokenizer = _tokenizer(model_dir)
        sessions[label] = session_for(graph, threads=1)
        logits = predict_logits(sessions[label], encode_batches(tokenizer, texts, 64, 128))
        truth = numpy.array([label_names.index(name) for name in labels])
        batches[label] = encode_batches(tokenizer, texts[:latency_texts], 1, 128)
        rows[label] = {
            "model_dir": str(model_dir),
            "stage": manifest["stage"],
            "layers": AutoConfig.from_pretrained(model_dir).num_hidden_layers,
            "layers_kept": manifest["training"].get("layers_kept"),
            "epochs": manifest["config"]["epochs"],
            "seed": manifest["config"]["seed"],
            "training_steps": manifest["training"]["steps"],
            "augmentation": (manifest.get("distillation") or {}).get("augmentation"),
            "training_wall_time_s": manifest["training"]["wall_time_s"],
            "test_accuracy_fp32": round(manifest["metrics"]["test"]["accuracy"], 4),
            "test_accuracy_int8": round(float((logits.argmax(-1) == truth).mean()), 4),
            "int8_size_mb": round(graph.stat().st_size / 2**20, 2),
            "int8_variant": chosen["chosen"],
            "export_and_quantize_s": round(time.perf_counter() - started, 1),
        }
    # Every student sees the same texts in turn: one-thread batch-1 latency, as on a phone. The students
    # are all cut from one MiniLM, so one tokenisation serves them all (checked).
    reference = next(iter(batches.values()))
    for label, encoded in batches.items():
        if any(not numpy.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(encoded, reference, strict=True)):
            raise click.ClickException(f"{label} tokenises the test texts differently; time it separately")
    for label, (p50, p90) in interleaved_batch1_latency_ms(sessions, reference).items():
        rows[label] |= {"int8_p50_ms": round(p50, 3), "int8_p90_ms": round(p90, 3)}
    return rows


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _summary(rows: dict[str, dict], teacher: Path, name: str, variant: str) -> dict:
    teacher_manifest = json.loads((teacher / "edgetune.json").read_text())
    comparisons, targets_met = {}, {}
    for layers in ("3", "6"):
        plain, distilled = rows.get(f"plain-{layers}"), rows.get(f"distilled-{layers}")
        if plain and distilled:
            comparisons[f"distillation_gain_points_{layers}_layers_int8"] = round(
                100 * (distilled["test_accuracy_int8"] - plain["test_accuracy_int8"]), 2)
            comparisons[f"distillation_gain_points_{layers}_layers_fp32"] = round(
                100 * (distilled["test_accuracy_fp32"] - plain["test_accuracy_fp32"]), 2)
            # Augmented copies add steps per epoch: equal epochs are then not an equal budget.
            comparisons[f"equal_budget_{layers}_layers"] = (plain["epochs"], plain["seed"], plain["training_steps"]) \
                == (distilled["epochs"], distilled["seed"], distilled["training_steps"])
    six = rows.get("distilled-6") or rows.get("plain-6")
    three = rows.get("distilled-3") or rows.get("plain-3")
    if six and three:
        comparisons["p50_ratio_3_layers_vs_6_layers_int8"] = round(three["int8_p50_ms"] / six["int8_p50_ms"], 3)
        targets_met["three_layer_p50_at_most_0.6x"] = comparisons["p50_ratio_3_layers_vs_6_layers_int8"] <= 0.6
    if "distilled-6" in rows:
        targets_met["distilled_6_layer_int8_at_least_93.0"] = rows["distilled-6"]["test_accuracy_int8"] >= 0.93
    # The gain target is "at equal budget": a comparison whose runs trained for different steps is
    # reported above but does not count for it.
    gains = [comparisons[f"distillation_gain_points_{layers}_layers_int8"] for layers in ("3", "6")
             if comparisons.get(f"equal_budget_{layers}_layers")]
    if gains:
        targets_met["distillation_at_least_+0.5_points"] = all(gain >= 0.5 for gain in gains)
    return {
        "benchmark": name,
        "teacher": {"path": str(teacher), "model": teacher_manifest["base_model"]["name"],
                    "test_accuracy": teacher_manifest["metrics"]["test"]["accuracy"],
                    "training": teacher_manifest["training"], "config": teacher_manifest["config"]},
        "students": rows,
        "comparisons": comparisons,
        "targets": {"distilled_6_layer_int8_test_accuracy_min": 0.93, "distillation_gain_points_min": 0.5,
                    "three_layer_p50_ratio_max": 0.6},
        "targets_met": targets_met,
        "int8_variant": variant,
        "evaluated_on": "Banking77 test split (3,080 texts); latency batch 1, one thread, interleaved",
    } | run_context()


if __name__ == "__main__":
    main()
