"""How far a bundle's outputs move between CPU targets: the measurement behind the golden tolerance.

    python benchmarks/cross_isa_drift.py BUNDLE_DIR --data test.csv --texts 300 [--targets avx2,arm64]

Runs the bundle's graph on the same tokenised batches (32 texts, spread over the labelled file, plus
the golden examples) on this CPU and on each emulated target (scripts/emulate.sh --exec, qemu-user),
and reports per target: top-label agreement with this CPU, the largest and the 99th-percentile drift
of the probability of this CPU's top label, accuracy on both, and the golden examples' largest drift.
Writes benchmarks/results/cross_isa_drift_<bundle>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import run_context  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 32


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    shifted = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", required=True, help="Labelled texts (CSV/TSV/JSONL).")
    parser.add_argument("--texts", type=int, default=300, help="Texts spread over --data.")
    parser.add_argument("--targets", default="avx2,arm64")
    parser.add_argument("--name", default=None, help="Result name (default: the bundle's folder name).")
    args = parser.parse_args()

    from edgetune.quantize.target import outputs_on_target
    from edgetune_runtime.bench import BenchConfig, _labelled_texts
    from edgetune_runtime.bundle import ClassificationBundle
    from edgetune_runtime.device import describe_machine
    from edgetune_runtime.targets import cpu_target

    bundle = ClassificationBundle.load(args.bundle, intra_op_threads=1)
    texts, labels = _labelled_texts(BenchConfig(data=args.data, limit=args.texts, spread=True), bundle.labels)
    golden = json.loads((bundle.directory / bundle.manifest["golden"]).read_text())
    # The golden examples as one batch, as `verify` runs them; the texts in batches of 32 as `predict` does.
    batches = [bundle.encode([example["text"] for example in golden])]
    batches += [bundle.encode(texts[start:start + BATCH]) for start in range(0, len(texts), BATCH)]
    model = bundle.directory / bundle.manifest["model"]
    names = [output.name for output in bundle.session.get_outputs()]
    host_logits = numpy.concatenate([bundle.session.run(names[:1], batch)[0] for batch in batches])
    host = _softmax(host_logits)
    expected = numpy.array([bundle.labels.index(label) for label in labels])
    golden_count = len(golden)

    def accuracy(probabilities: numpy.ndarray) -> float:
        return round(float((probabilities[golden_count:].argmax(1) == expected).mean()), 4)

    result = {"bundle": str(args.bundle.resolve()), "model_sha256": bundle.manifest["files"][bundle.manifest["model"]],
              "data": str(Path(args.data).resolve()), "texts": len(texts), "golden_examples": golden_count,
              "host": {"target": cpu_target(describe_machine()), "accuracy": accuracy(host)}, "targets": {},
              **run_context()}
    top = host.argmax(1)
    rows = numpy.arange(len(host))
    for target in args.targets.split(","):
        print(f"{target}: running {len(batches)} batches under emulation", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            emulated = _softmax(outputs_on_target(target, {"bundle": model}, batches, Path(scratch))["bundle"])
        drift = numpy.abs(emulated[rows, top] - host[rows, top])
        golden_drift = numpy.abs(emulated[rows[:golden_count], [bundle.labels.index(e["label"]) for e in golden]]
                                 - numpy.array([e["probability"] for e in golden]))
        agree = emulated.argmax(1) == top
        result["targets"][target] = {
            "top_label_agreement": round(float(agree[golden_count:].mean()), 4),
            "top_label_changes": int((~agree[golden_count:]).sum()),
            "max_probability_drift": round(float(drift[golden_count:].max()), 4),
            "p99_probability_drift": round(float(numpy.percentile(drift[golden_count:], 99)), 4),
            "golden_max_probability_drift": round(float(golden_drift.max()), 4),
            "golden_top_label_changes": int((~agree[:golden_count]).sum()),
            "accuracy": accuracy(emulated)}
        print(f"{target}: {json.dumps(result['targets'][target])}", file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cross_isa_drift_{args.name or args.bundle.name}.json"
    from edgetune_runtime.atomic_write import write_json_atomic

    write_json_atomic(path, result)
    print(json.dumps(result["targets"], indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
