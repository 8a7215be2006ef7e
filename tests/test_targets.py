"""CPU targets: bundles record where they were verified, `verify` warns elsewhere, reports set targets side by side,
and scripts/emulate.sh runs the runtime under qemu-user (slow; skipped where it has not been set up)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from emulation import EMULATE, emulation_unavailable

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.bundle.targets import record_verified_targets
from edgetune.errors import EdgetuneError
from edgetune.report.merge import ReportConfig, report
from edgetune_runtime.bench import BenchConfig, bench
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.cli import main as runtime_cli
from edgetune_runtime.device import describe_machine
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import seal_manifest
from edgetune_runtime.targets import cpu_target, unverified_target_warning


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("targets") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=4, zip=True))
    return output


def _machine(architecture: str, *flags: str) -> dict:
    return {"architecture": architecture, "isa_flags": list(flags), "cpu_model": "test CPU"}


def test_a_cpu_is_classed_by_the_instruction_set_its_int8_kernels_use():
    assert cpu_target(_machine("x86_64", "avx2", "avx512f", "avx512_vnni")) == "avx512-vnni"
    assert cpu_target(_machine("x86_64", "avx", "avx2", "fma")) == "avx2"
    assert cpu_target(_machine("x86_64", "avx")) == "other"
    assert cpu_target(_machine("aarch64", "asimd", "asimddp")) == "arm64"
    assert cpu_target(_machine("arm64")) == "arm64"


def test_verify_warns_only_on_a_cpu_outside_the_recorded_targets():
    manifest = {"verified_targets": ["avx512-vnni", "arm64"]}
    assert unverified_target_warning(manifest, _machine("aarch64")) is None
    warning = unverified_target_warning(manifest, _machine("x86_64", "avx2"))
    assert warning.startswith("warning: this CPU is avx2 (test CPU)") and "avx512-vnni, arm64" in warning
    assert unverified_target_warning({}, _machine("x86_64", "avx2")) is None  # older bundles record none


def test_a_bundle_records_the_build_machine_and_verify_warns_elsewhere(bundle_dir, tmp_path):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    host = cpu_target(describe_machine())
    assert manifest["verified_targets"] == [host]
    assert manifest["golden_tolerance"] == BundleConfig().golden_tolerance
    result = CliRunner().invoke(runtime_cli, ["verify", str(bundle_dir), "-o", str(tmp_path / "verify.json")])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    outcome = json.loads((tmp_path / "verify.json").read_text())
    assert outcome["passed"] and outcome["checked"] == 4 and outcome["mismatches"] == []
    assert outcome["target"] == host and outcome["golden_tolerance"] == manifest["golden_tolerance"]
    # The same bundle re-sealed as if verified on another target only: still verifies here, with a warning.
    elsewhere = shutil.copytree(bundle_dir, tmp_path / "elsewhere")
    other = "arm64" if host != "arm64" else "avx2"
    (elsewhere / "manifest.json").write_text(json.dumps(seal_manifest(manifest | {"verified_targets": [other]})))
    result = CliRunner().invoke(runtime_cli, ["verify", str(elsewhere)])
    assert result.exit_code == 0, result.output
    assert f"the bundle was verified on {other} only" in result.output and "golden examples reproduce" in result.output


def test_recording_targets_reseals_the_directory_and_its_zip(bundle_dir, tmp_path):
    copy = shutil.copytree(bundle_dir, tmp_path / "tiny")
    shutil.copyfile(bundle_dir.with_name("tiny.zip"), tmp_path / "tiny.zip")
    host = cpu_target(describe_machine())
    recorded = record_verified_targets(copy, ["avx2", "arm64"])
    assert recorded == list(dict.fromkeys([host, "avx2", "arm64"]))
    assert Bundle.load(copy).manifest["verified_targets"] == recorded  # the seal holds
    assert Bundle.load(tmp_path / "tiny.zip").manifest["verified_targets"] == recorded
    with pytest.raises(EdgetuneError, match="'sparc' is not a CPU target"):
        record_verified_targets(copy, ["sparc"])
    (copy / "golden.json").write_text("[]")
    with pytest.raises(BundleError, match="golden.json does not match its sha256"):
        record_verified_targets(copy, ["arm64"])  # a changed bundle is never re-sealed


def test_golden_tolerance_passes_a_different_kernel_and_refuses_a_wrong_label(bundle_dir, tmp_path):
    golden = json.loads((bundle_dir / "golden.json").read_text())
    tolerance = BundleConfig().golden_tolerance

    def resealed(name: str, examples: list) -> Path:
        copy = shutil.copytree(bundle_dir, tmp_path / name)
        (copy / "golden.json").write_text(json.dumps(examples))
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"]["golden.json"] = sha256_file(copy / "golden.json")
        (copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
        return copy

    # Probabilities as another CPU's kernels give them (within the tolerance, same labels): verified.
    shifted = [example | {"probability": max(0.0, example["probability"] - tolerance * 0.9)} for example in golden]
    assert Bundle.load(resealed("shifted", shifted)).verify().passed
    # Beyond it, or a confident example now labelled otherwise: refused.
    drifted = [example | {"probability": min(1.0, example["probability"] + tolerance * 1.5)} for example in golden]
    assert not Bundle.load(resealed("drifted", drifted)).verify().passed
    labels = Bundle.load(bundle_dir).labels
    relabelled = [golden[0] | {"label": next(label for label in labels if label != golden[0]["label"]),
                               "margin": 1.0}, *golden[1:]]
    assert len(Bundle.load(resealed("relabelled", relabelled)).verify().mismatches) == 1


def test_report_sets_emulated_targets_beside_the_host_and_keeps_them_off_the_latency_front(
        bundle_dir, small_banking77, tmp_path):
    result = bench(bundle_dir, BenchConfig(data=str(small_banking77["test"]), batch_sizes=(1, 4), warmup=1,
                                           cold_starts=0, limit=20, name="tiny"))
    host = result.write(tmp_path / "host.json")
    payload = json.loads(host.read_text())
    payload["device"] |= {"cpu_model": "ARM Neoverse-N1, emulated by qemu-aarch64 -cpu neoverse-n1",
                          "architecture": "aarch64", "isa_flags": ["asimd", "asimddp"],
                          "emulated": "qemu-aarch64 -cpu neoverse-n1"}
    for run in payload["runs"]:
        # "faster" under emulation: must not count; and lower at batch 4, which the table must not hide.
        run["accuracy"], run["p50_ms"] = 0.5 if run["batch_size"] == 1 else 0.45, run["p50_ms"] / 100
    arm = tmp_path / "arm64.json"
    arm.write_text(json.dumps(payload))
    merged = report([host, arm], tmp_path / "report", ReportConfig())
    assert not any(row.emulated for row in merged.front)
    markdown = (tmp_path / "report" / "report.md").read_text()
    host_column = f"{cpu_target(describe_machine())} (host)"
    assert f"| bundle | {host_column} | arm64 (emulated) |" in markdown
    assert "| tiny |" in markdown and "| 50.00% (45.00% at batch 4) |" in markdown
    assert "emulated (qemu-aarch64 -cpu neoverse-n1)" in markdown
    assert (tmp_path / "report" / "targets.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.skipif(emulation_unavailable() is not None, reason=str(emulation_unavailable()))
def test_the_bundle_verifies_and_benches_on_emulated_avx2_and_arm64(bundle_dir, small_banking77, tmp_path):
    run = subprocess.run(["bash", str(EMULATE), str(bundle_dir), str(small_banking77["test"]), "--limit", "8",
                          "--out", str(tmp_path), "--name", "tiny"], capture_output=True, text=True,
                         env=os.environ | {"PYTHON": sys.executable})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("golden examples reproduce on this device") == 3  # host, avx2, arm64
    assert "arm64 (emulated)" in (tmp_path / "tiny_report" / "report.md").read_text()
    for target, architecture in (("avx2", "x86_64"), ("arm64", "aarch64")):
        result = json.loads((tmp_path / f"tiny_{target}.json").read_text())
        device = result["device"]
        assert device["architecture"] == architecture and cpu_target(device) == target
        assert device["emulated"].startswith("qemu-") and "emulated by" in device["cpu_model"]
        assert result["data"]["texts"] == 8 and 0 <= result["runs"][0]["accuracy"] <= 1


def test_bench_spread_takes_texts_evenly_over_a_file_sorted_by_label(bundle_dir, tmp_path):
    from edgetune_runtime.bench import _labelled_texts

    labels = Bundle.load(bundle_dir).labels
    rows = [{"text": f"text {index}", "label": labels[index // 5 % len(labels)]} for index in range(40)]
    data = tmp_path / "sorted.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first, _ = _labelled_texts(BenchConfig(data=str(data), limit=4), labels)
    spread, spread_labels = _labelled_texts(BenchConfig(data=str(data), limit=4, spread=True), labels)
    assert first == ["text 0", "text 1", "text 2", "text 3"]
    assert spread == ["text 0", "text 10", "text 20", "text 30"]
    assert spread_labels == [rows[index]["label"] for index in (0, 10, 20, 30)]
