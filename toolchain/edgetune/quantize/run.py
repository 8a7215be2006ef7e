"""`quantize`: build variants of an exported graph, evaluate each, keep one inside the accuracy budget."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy

from edgetune.atomic import atomic_directory, write_json_atomic
from edgetune.configuration import config_to_dict
from edgetune.errors import EdgetuneError
from edgetune.export.artifact import MODEL_FILE, read_onnx_artifact
from edgetune.export.heldout import RecordedData, heldout_texts, read_heldout_file
from edgetune.interrupts import raise_if_terminated
from edgetune.quantize.config import QuantizeConfig
from edgetune.quantize.evaluate import VariantEvaluation
from edgetune.quantize.target import emulated_target
from edgetune.quantize.variants import VARIANTS, VariantSpec
from edgetune.scratch import scratch_directory
from edgetune.stage_manifest import MANIFEST, manifest_sha256, write_stage_manifest
from edgetune.tasks import HeldOutText, Task
from edgetune_runtime.device import describe_machine

log = logging.getLogger(__name__)

# Compression hurts rare classes first (Hooker et al. 2019): list the classes that lose this much F1.
F1_LOSS_FLAGGED_POINTS = 2.0
# Variants within 3% of the fastest p50 count as equally fast: side-by-side timing on a shared CPU
# still wobbles by a percent or two between runs.
LATENCY_TIE_FRACTION = 0.03
# Timing every variant side by side is noisy at the top: identical graphs measured up to 4.4% apart
# on 200 texts among twelve sessions (each call finds the caches filled by another model). So the
# eligible variants within 8% of the fastest are timed again, head to head, over the latency texts
# three times; there identical graphs measured within 1%, and 2% counts as a tie.
CONTENDER_FRACTION = 0.08
HEAD_TO_HEAD_PASSES = 3
HEAD_TO_HEAD_TIE_FRACTION = 0.02


def quantize(export_dir: str | Path, output_dir: str | Path, config: QuantizeConfig, *, force: bool = False) -> dict:
    """Evaluate `config.variants` of `export_dir`'s graph and write the chosen one to `output_dir`.

    Returns the report (also written as quantize_report.json): every variant's accuracy, macro-F1,
    worst per-class F1 change, size and batch-1 latency, and which one was kept and why.
    """
    export_dir, output_dir = Path(export_dir), Path(output_dir)
    manifest, task = read_onnx_artifact(export_dir, ("export",), "not an `edgetune export` directory")
    if output_dir.exists() and not force:
        raise EdgetuneError(f"{output_dir} already exists; choose another output path or pass --force to replace it")

    tuning = manifest.get("session", {})  # how the export says its graph runs fastest; variants run the same way
    # Validation selects, calibration calibrates static variants, test is only reported: files the
    # user names first, else the splits recorded at fine-tuning where that record is usable here.
    recorded = RecordedData(manifest["source"].get("data"), export_dir)
    columns = {"text_column": config.text_column, "label_column": config.label_column}
    validation = heldout_texts(config.validation, recorded, "validation", "--validation",
                               labels_required=task.labels_required, **columns)
    calibration_texts = _calibration_texts(config, recorded, columns)
    test_split = recorded.optional_split("test")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    max_length = manifest["max_length"]
    eval_targets = task.evaluation_targets(validation, manifest)
    eval_batches = task.encode(tokenizer, validation.texts, 64, max_length)
    latency_batches = task.encode(tokenizer, validation.texts[: config.latency_texts], 1, max_length)
    calibration_batches = _fixed_length_batches(tokenizer, calibration_texts, max_length) if calibration_texts else []

    # One session per variant, made once: it scores accuracy now and is timed side by side later.
    sessions: dict[str, object] = {}

    def evaluate(spec: VariantSpec, path: Path) -> VariantEvaluation:
        from edgetune.onnx_session import session_for

        sessions[spec.name] = session_for(path, config.threads, tuning)
        return task.evaluate_variant(spec.name, spec.description, path, sessions[spec.name], eval_batches,
                                     eval_targets, manifest, list(spec.nodes_to_exclude))

    # Removed on errors and signals, swept at the next start after a SIGKILL (`edgetune.scratch`).
    with scratch_directory("quantize") as scratch_dir:
        built: dict[str, tuple[VariantSpec, Path, VariantEvaluation]] = {}
        failures: dict[str, str] = {}
        names = ["fp32", *[name for name in config.variants if name != "fp32"]]
        for name in names:
            spec = VARIANTS[name]
            if spec.kind == "static" and not calibration_batches:
                failures[name] = "no calibration text: pass --calibration FILE"
                continue
            result = _build_and_evaluate(spec, export_dir / MODEL_FILE, scratch_dir, calibration_batches, evaluate)
            if isinstance(result, str):
                failures[name] = result
                continue
            built[name] = (spec, *result)
        if "fp32" not in built:
            raise EdgetuneError(f"{export_dir / MODEL_FILE}: the fp32 reference could not be built and evaluated "
                                f"({failures['fp32']}); nothing was written")
        reference = built["fp32"][2]
        if config.auto:
            _rescue_with_exclusions(built, reference, config, export_dir / MODEL_FILE, scratch_dir,
                                    calibration_batches, evaluate)
        _time_side_by_side(built, {name: sessions[name] for name in built}, latency_batches, config.threads)
        rows = {name: _row(evaluation, reference, config) for name, (_, _, evaluation) in built.items()}
        target = emulated_target(config.target)
        if target is not None:
            _score_on_target(target, built, rows, task, tokenizer, validation, manifest, config, scratch_dir)
        elif config.auto or not config.keep:
            _time_contenders_head_to_head(rows, sessions, latency_batches)
        chosen = _choose(rows, config, emulated=target is not None)
        log.info("\n%s", format_quantize_table(rows, chosen))
        spec, chosen_path, chosen_eval = built[chosen]
        if test_split is not None:
            for name, path in ((chosen, chosen_path), ("fp32", built["fp32"][1])):
                rows[name]["test"] = _test_metrics(task, path, tokenizer, test_split, manifest, tuning)
        report = {"chosen": chosen, "reason": _reason(rows, chosen, config), "variants": rows,
                  "failed": failures, "evaluated_on": validation.source, "config": config_to_dict(config),
                  # Its latencies (and, with --target, its accuracies) hold for this machine and this command only.
                  "machine": describe_machine(), "command": " ".join(sys.argv)}
        with atomic_directory(output_dir, overwrite=force) as staging:
            shutil.copy2(chosen_path, staging / MODEL_FILE)
            for path in export_dir.iterdir():
                if path.is_file() and path.name not in (MODEL_FILE, MANIFEST):
                    shutil.copy2(path, staging / path.name)
            write_json_atomic(staging / "quantize_report.json", report)
            _write_manifest(staging, export_dir, manifest, task, config, chosen, rows[chosen], spec)
    return report


def _build_and_evaluate(spec, fp32_path, scratch_dir, calibration_batches, evaluate):
    from edgetune.quantize.build import build_variant

    path = scratch_dir / f"{spec.name}.onnx"
    log.info("building %s: %s", spec.name, spec.description)
    try:
        build_variant(spec, fp32_path, path, calibration_batches)
        return path, evaluate(spec, path)
    except OSError:
        raise  # a full disk or an unreadable file says nothing about the variant: stop, write nothing
    except Exception as error:  # noqa: BLE001 - a variant ORT cannot build for this graph is reported, not fatal
        raise_if_terminated()  # a SIGTERM that surfaced as another error is not a failed variant
        log.warning("variant %s failed: %s: %s", spec.name, type(error).__name__, str(error).splitlines()[0][:200])
        return f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"


def _time_side_by_side(built: dict, sessions: dict, latency_batches, threads: int) -> None:
    from edgetune.quantize.evaluate import interleaved_batch1_latency_ms

    log.info("timing %d variants side by side on %d texts, batch 1, %s thread(s)", len(built), len(latency_batches),
             threads or "all")
    for name, (p50, p90) in interleaved_batch1_latency_ms(sessions, latency_batches).items():
        evaluation = built[name][2]
        evaluation.p50_ms, evaluation.p90_ms = round(p50, 3), round(p90, 3)


def _time_contenders_head_to_head(rows: dict[str, dict], sessions: dict, latency_batches) -> None:
    """Re-time the eligible variants close to the fastest among themselves; adds `head_to_head_p50_ms`."""
    from edgetune.quantize.evaluate import interleaved_batch1_latency_ms

    eligible = _eligible(rows)
    if not eligible:
        return
    fastest_ms = min(rows[name]["p50_ms"] for name in eligible)
    contenders = [name for name in eligible if rows[name]["p50_ms"] <= fastest_ms * (1 + CONTENDER_FRACTION)]
    if len(contenders) < 2:
        return
    log.info("timing the %d fastest variants head to head: %s", len(contenders), ", ".join(contenders))
    timings = interleaved_batch1_latency_ms({name: sessions[name] for name in contenders},
                                            list(latency_batches) * HEAD_TO_HEAD_PASSES)
    for name, (p50, _) in timings.items():
        rows[name]["head_to_head_p50_ms"] = round(p50, 3)


def _eligible(rows: dict[str, dict]) -> list[str]:
    # A variant slower than fp32 on this CPU is reported but never chosen: it would only lose accuracy.
    return [name for name, row in rows.items() if row["within_budget"] and not row["slower_than_fp32"]]


def _row(evaluation: VariantEvaluation, reference: VariantEvaluation, config: QuantizeConfig) -> dict:
    changes = evaluation.per_class_f1_change(reference)
    losers = {label: change for label, change in sorted(changes.items(), key=lambda item: item[1])
              if change <= -F1_LOSS_FLAGGED_POINTS}
    drop_points = round(100 * (reference.accuracy - evaluation.accuracy), 2)
    worst_change = min(changes.values()) if changes else 0.0
    row = asdict(evaluation)
    row.pop("per_class_f1")
    return row | {
        "accuracy_drop_points": drop_points,
        "worst_class_f1_change_points": worst_change,
        "classes_losing_over_2_points": losers,
        "speedup_vs_fp32": round(reference.p50_ms / evaluation.p50_ms, 3) if evaluation.p50_ms else None,
        "class_f1_within_budget": _class_f1_within_budget(worst_change, config),
        "within_budget": _within_budget(drop_points, worst_change, config),
        "slower_than_fp32": evaluation.p50_ms > reference.p50_ms and evaluation.name != "fp32",
    }


def _score_on_target(target: str, built: dict, rows: dict[str, dict], task: Task, tokenizer, validation,
                     record: dict, config: QuantizeConfig, scratch_dir: Path) -> None:
    """Score every variant on the first `target_texts` validation texts on the emulated `target`: each row gets
    `target_accuracy` and `target_accuracy_drop_points` against fp32 there, and `within_budget` is decided there."""
    from edgetune.quantize.target import outputs_on_target

    count = min(config.target_texts, len(validation.texts))
    log.info("scoring %d variants on %d texts on an emulated %s CPU (slow)", len(built), count, target)
    batches = task.encode(tokenizer, validation.texts[:count], 64, record["max_length"])
    label_ids = task.evaluation_targets(validation, record)[:count]
    outputs = outputs_on_target(target, {name: path for name, (_, path, _) in built.items()}, batches, scratch_dir)
    scored = {name: task.evaluate_variant(name, spec.description, path, None, batches, label_ids, record,
                                          list(spec.nodes_to_exclude), outputs=outputs[name])
              for name, (spec, path, _) in built.items()}
    for name, evaluation in scored.items():
        drop = round(100 * (scored["fp32"].accuracy - evaluation.accuracy), 2)
        worst = min(evaluation.per_class_f1_change(scored["fp32"]).values(), default=0.0)
        rows[name] |= {"target": target, "emulated": True, "target_texts": count,
                       "target_accuracy": evaluation.accuracy, "target_accuracy_drop_points": drop,
                       "target_worst_class_f1_change_points": worst,
                       "within_budget": rows[name]["within_budget"] and _within_budget(drop, worst, config)}


def _within_budget(drop_points: float, worst_change_points: float, config: QuantizeConfig) -> bool:
    """Whether a variant's accuracy drop and its worst class's F1 change against fp32 fit both budgets."""
    return drop_points <= config.max_accuracy_drop and _class_f1_within_budget(worst_change_points, config)


def _class_f1_within_budget(worst_change_points: float, config: QuantizeConfig) -> bool:
    """Whether the class that loses most F1 against fp32 stays inside `--max-class-f1-drop` (always, without one)."""
    return config.max_class_f1_drop is None or -worst_change_points <= config.max_class_f1_drop


def _choose(rows: dict[str, dict], config: QuantizeConfig, *, emulated: bool = False) -> str:
    if config.keep and not config.auto:
        if config.keep not in rows:
            raise EdgetuneError(f"--keep {config.keep}: that variant was not built; add it to the variants")
        if not rows[config.keep]["class_f1_within_budget"]:
            raise EdgetuneError(
                f"--keep {config.keep}: one class loses {-rows[config.keep]['worst_class_f1_change_points']} F1 "
                f"points, over the {config.max_class_f1_drop}-point per-class budget; raise --max-class-f1-drop "
                "or keep another variant")
        if not rows[config.keep]["within_budget"]:
            raise EdgetuneError(
                f"--keep {config.keep}: accuracy drops {rows[config.keep]['accuracy_drop_points']} points, "
                f"over the {config.max_accuracy_drop}-point budget; raise --max-accuracy-drop or keep another variant"
            )
        return config.keep
    if emulated:
        # Latency under emulation is the emulator's: among the quantised variants within the budget (on this CPU
        # and there) the most accurate there, then the smallest; fp32 only when none is within it.
        eligible = [name for name, row in rows.items() if row["within_budget"] and name != "fp32"] or ["fp32"]
        return min(eligible, key=lambda name: (rows[name]["target_accuracy_drop_points"], rows[name]["size_mb"]))
    eligible = _eligible(rows)
    # The head-to-head timing decides among the variants it re-timed (the others were slower by more
    # than CONTENDER_FRACTION); without one, the first pass does.
    contenders = [name for name in eligible if "head_to_head_p50_ms" in rows[name]]
    timing, tie_fraction = (("head_to_head_p50_ms", HEAD_TO_HEAD_TIE_FRACTION) if contenders
                            else ("p50_ms", LATENCY_TIE_FRACTION))
    contenders = contenders or eligible
    fastest_ms = min(rows[name][timing] for name in contenders)
    # Latencies this close are a tie on a real machine; among tied variants keep the one that hurts
    # accuracy least, then its worst class least, then the smallest.
    tied = [name for name in contenders if rows[name][timing] <= fastest_ms * (1 + tie_fraction)]
    return min(tied, key=lambda name: (rows[name]["accuracy_drop_points"], -rows[name]["worst_class_f1_change_points"],
                                       rows[name]["size_mb"], rows[name][timing]))


def _reason(rows: dict[str, dict], chosen: str, config: QuantizeConfig) -> str:
    row = rows[chosen]
    if row.get("emulated"):
        return (f"most accurate quantised variant on an emulated {row['target']} CPU within {config.max_accuracy_drop} "
                f"accuracy points of fp32 there and here, then the smallest: {row['target_accuracy']:.2%} on "
                f"{row['target_texts']} validation texts there (drop {row['target_accuracy_drop_points']} points), "
                f"{row['size_mb']} MB. Latency under emulation is the emulator's, not the target's, so it did not "
                "count; measure it on the device (`edgetune-runtime bench`)")
    timing = (f"head to head with the variants within {CONTENDER_FRACTION:.0%} of it (ties within "
              f"{HEAD_TO_HEAD_TIE_FRACTION:.0%} go to the more accurate): p50 {row['head_to_head_p50_ms']} ms; "
              if "head_to_head_p50_ms" in row else
              f"(ties within {LATENCY_TIE_FRACTION:.0%} go to the more accurate); ")
    class_budget = ("" if config.max_class_f1_drop is None else
                    f" and no class losing over {config.max_class_f1_drop} F1 points")
    return (f"fastest variant within {config.max_accuracy_drop} accuracy points of fp32{class_budget}, timed {timing}"
            f"p50 among all variants {row['p50_ms']} ms ({row['speedup_vs_fp32']}x fp32), "
            f"accuracy drop {row['accuracy_drop_points']} points, worst class F1 change "
            f"{row['worst_class_f1_change_points']} points")


def _sensitive_node_groups(fp32_path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Node groups to keep in float, most likely culprits first: the head, then the last and first layers."""
    import onnx

    matmuls = [node.name for node in onnx.load(str(fp32_path), load_external_data=False).graph.node
               if node.op_type in ("MatMul", "Gemm", "Attention")]
    head = tuple(n for n in matmuls if "classifier" in n or "pooler" in n)
    layers = sorted({part for n in matmuls for part in n.split("/") if part.startswith("layer.")},
                    key=lambda part: int(part.split(".")[1]) if part.split(".")[1].isdigit() else 0)
    groups = [("head", head)] if head else []
    if layers:
        groups.append(("last-layer", tuple(n for n in matmuls if f"/{layers[-1]}/" in n)))
        groups.append(("first-layer", tuple(n for n in matmuls if f"/{layers[0]}/" in n)))
    return [(label, nodes) for label, nodes in groups if nodes]


def _rescue_with_exclusions(built, reference, config, fp32_path, scratch_dir, calibration_batches, evaluate) -> None:
    """For each int8 variant over budget (overall or per class), keep sensitive node groups in float until it
    fits (or give up)."""
    groups = _sensitive_node_groups(fp32_path)

    def within_budget(evaluation: VariantEvaluation) -> bool:
        return _within_budget(100 * (reference.accuracy - evaluation.accuracy),
                              min(evaluation.per_class_f1_change(reference).values(), default=0.0), config)

    for spec, _, evaluation in list(built.values()):
        if spec.kind not in ("dynamic", "static"):
            continue
        fits = within_budget(evaluation)
        excluded: tuple[str, ...] = ()
        labels: list[str] = []
        for label, nodes in groups:
            if fits:
                break
            excluded += nodes
            labels.append(label)
            candidate = spec.excluding(excluded, "-".join(f"float-{g}" for g in labels))
            result = _build_and_evaluate(candidate, fp32_path, scratch_dir, calibration_batches, evaluate)
            if isinstance(result, str):
                break
            built[candidate.name] = (candidate, *result)
            fits = within_budget(result[1])


def _fixed_length_batches(tokenizer, texts: list[str], max_length: int) -> list[dict[str, numpy.ndarray]]:
    """Batch-1 calibration inputs all padded to one length: histogram calibrators (Entropy,
    Percentile) stack every observed tensor and need identical shapes."""
    longest = max(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=longest, return_tensors="np")
    return [{name: value[i:i + 1].astype(numpy.int64) for name, value in encoded.items()} for i in range(len(texts))]


def _spread(texts: list[str], count: int) -> list[str]:
    step = max(1, len(texts) // count)
    return texts[::step][:count]  # spread over the file rather than its first rows (often one class)


def _test_metrics(task: Task, path: Path, tokenizer, split: HeldOutText, record: dict, tuning: dict) -> dict:
    outputs = task.onnx_outputs(path, task.encode(tokenizer, split.texts, 64, record["max_length"]), tuning)
    return task.test_metrics(outputs, task.evaluation_targets(split, record), record)


def _calibration_texts(config: QuantizeConfig, recorded: RecordedData, columns: dict) -> list[str]:
    """Texts for static variants' ranges: `config.calibration`, else the recorded training split; none
    is needed (and none read) when no static variant is asked for."""
    static = [name for name in config.variants if VARIANTS[name].kind == "static"]
    if config.calibration:
        return _spread(read_heldout_file(config.calibration, **columns).texts, config.calibration_samples)
    if not static:
        return []
    reason = recorded.unavailable()
    if reason is not None and not config.auto:
        raise EdgetuneError(f"{reason}; static variants ({', '.join(static)}) need calibration text: pass "
                            "--calibration FILE, or drop them from the variants")
    if reason is not None:
        log.warning("%s and no --calibration FILE was given: static variants are skipped", reason)
        return []
    return _spread(recorded.split("train", "--calibration").texts, config.calibration_samples)


def format_quantize_table(rows: dict[str, dict], chosen: str) -> str:
    header = (f"{'variant':<44}{'acc':>8}{'Δacc pt':>9}{'macroF1':>9}{'worst ΔF1':>10}{'MB':>8}"
              f"{'p50 ms':>9}{'p90 ms':>9}{'speedup':>8}  note")
    lines = [header]
    for name, row in sorted(rows.items(), key=lambda item: item[1]["p50_ms"]):
        note = []
        if name == chosen:
            note.append("CHOSEN")
        if "head_to_head_p50_ms" in row:
            note.append(f"head to head {row['head_to_head_p50_ms']:.3f} ms")
        if not row.get("class_f1_within_budget", True):  # reports written before the per-class budget lack it
            note.append("a class over the F1 budget")
        elif not row["within_budget"]:
            note.append("over budget")
        if row["slower_than_fp32"]:
            note.append("slower than fp32")
        losing = len(row["classes_losing_over_2_points"])
        if losing:
            note.append(f"{losing} {'class loses' if losing == 1 else 'classes lose'} >2 F1 pt")
        if "target_accuracy" in row:
            # 0.0 - drop, not -drop: no drop reads "+0.00", not "-0.00".
            note.append(f"emulated {row['target']}: {row['target_accuracy']:.2%} "
                        f"({0.0 - row['target_accuracy_drop_points']:+.2f} pt)")
        lines.append(f"{name:<44}{row['accuracy']:>8.2%}{row['accuracy_drop_points']:>9.2f}{row['macro_f1']:>9.4f}"
                     f"{row['worst_class_f1_change_points']:>10.2f}{row['size_mb']:>8.1f}{row['p50_ms']:>9.3f}"
                     f"{row['p90_ms']:>9.3f}{row['speedup_vs_fp32']:>7.2f}x  {', '.join(note)}")
    return "\n".join(lines)


def _write_manifest(staging: Path, export_dir: Path, export_manifest: dict, task: Task, config: QuantizeConfig,
                    chosen: str, row: dict, spec: VariantSpec) -> None:
    from edgetune.export.onnx_export import graph_io

    write_stage_manifest(staging, "quantize", export_manifest["task"], {
        "source": {"path": str(export_dir), "manifest_sha256": manifest_sha256(export_dir),
                   "training_dir": export_manifest["source"]["path"],
                   "base_model": export_manifest["source"].get("base_model"),
                   "data": export_manifest["source"].get("data")},
        "variant": {"name": chosen, "spec": asdict(spec)},
        "config": config_to_dict(config),
        "graph": graph_io(staging / MODEL_FILE),
        "max_length": export_manifest["max_length"],
        **task.model_record(json.loads((staging / "config.json").read_text(encoding="utf-8"))),
        "session": export_manifest.get("session", {}),
        "evaluation": row,
    })
