"""`edgetune report`: bench results from several devices merge into one table and a Pareto plot."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune.cli.main import cli
from edgetune.errors import EdgetuneError
from edgetune.report.merge import ReportConfig, report, rows_from_bench
from edgetune.report.pareto import pareto_front
from edgetune.report.plot import write_pareto_plot
from edgetune.report.rows import ReportRow
from edgetune.report.table import format_table
from edgetune_runtime.bench import SCHEMA_VERSION, BenchConfig, bench

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_keeps_exactly_the_undominated_points():
    points = [(0.90, 5.0), (0.92, 8.0), (0.89, 9.0), (0.92, 7.0), (0.85, 2.0), (None, 1.0), (0.95, None),
              (0.85, 2.0)]
    # (0.92, 8) loses to (0.92, 7); (0.89, 9) to (0.90, 5); equal points both stay; missing values never count.
    assert pareto_front(points) == [4, 7, 0, 3]
    assert pareto_front([]) == []


def test_table_and_plot_take_plain_dicts_and_leave_out_empty_columns(tmp_path):
    rows = [{"name": "fp32", "accuracy": 0.93, "p50_ms": 9.1, "size_mb": 86.7, "macro_f1": 0.929, "extra": 1},
            {"name": "int8", "accuracy": 0.928, "p50_ms": 3.4, "size_mb": 21.9, "worst_class_f1_change": -2.5},
            ReportRow("int4", 0.85, 4.0, 14.0)]
    table = format_table(rows)
    header = table.splitlines()[0]
    assert header == "| name | accuracy | macro-F1 | worst class ΔF1 (pt) | p50 ms | MB |"
    assert "| int8 | 92.80% |  | -2.50 | 3.400 | 21.9 |" in table
    front = write_pareto_plot(rows, tmp_path / "plot.png", title="variants")
    assert front == [1, 0]  # int4 is slower and less accurate than int8
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="lacks p50_ms"):
        format_table([{"name": "x", "accuracy": 0.5, "size_mb": 1}])


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory, tiny_export_dir, small_banking77):
    """A real bench result, plus the same result as another device would write it."""
    directory = tmp_path_factory.mktemp("bench_results")
    bundle_dir = build_bundle(tiny_export_dir, directory / "tiny", BundleConfig(golden_examples=2)).directory
    result = bench(bundle_dir, BenchConfig(data=str(small_banking77["test"]), threads=(1, 2), batch_sizes=(1, 4),
                                           warmup=1, cold_starts=0, name="tiny-fp32"))
    laptop = result.write(directory / "laptop.json")
    payload = json.loads(laptop.read_text())
    payload["device"] |= {"cpu_model": "Cortex-A76", "architecture": "aarch64", "usable_cores": 4,
                          "isa_flags": ["asimd", "asimddp"]}
    for run in payload["runs"]:
        run["p50_ms"] *= 3
        run["accuracy"] = max(0.0, run["accuracy"] - 0.01)
    board = directory / "pi.json"
    board.write_text(json.dumps(payload))
    return laptop, board


def test_report_merges_devices_into_a_table_and_a_pareto_plot(bench_results, tmp_path):
    laptop, board = bench_results
    result = report([laptop, board], tmp_path / "report", ReportConfig())
    assert len(result.rows) == 8  # 2 devices x 2 thread counts x 2 batch sizes
    assert {row.device.split(",")[0] for row in result.rows} == {"Cortex-A76", rows_from_bench(laptop)[0].device
                                                                 .split(",")[0]}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| name | device | threads | batch | accuracy | macro-F1 | p50 ms | p90 ms | texts/s | MB | Pareto |" in \
        markdown and "| tiny-fp32 t1 | Cortex-A76, 4 cores, aarch64 |" in markdown
    assert (tmp_path / "report" / "pareto.png").read_bytes()[:8] == PNG_SIGNATURE
    # The board is slower and less accurate at every setting, so it never makes the front.
    assert result.front and all("Cortex-A76" not in row.device for row in result.front)
    assert all(row.batch_size == 1 for row in result.front)


def test_cli_report_prints_the_table_and_refuses_foreign_files_in_one_line(bench_results, tmp_path):
    laptop, board = bench_results
    runner = CliRunner()
    done = runner.invoke(cli, ["report", str(laptop), str(board), "-o", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert "Pareto front: tiny-fp32" in done.output and (tmp_path / "out" / "pareto.png").is_file()

    foreign = tmp_path / "metrics.json"
    foreign.write_text(json.dumps({"accuracy": 0.9}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "edgetune-runtime-bench", ')
    for path, message in ((foreign, "not an edgetune-runtime bench result"), (broken, "not valid JSON")):
        refused = runner.invoke(cli, ["report", str(laptop), str(path), "-o", str(tmp_path / "refused")])
        lines = refused.output.strip().splitlines()
        assert refused.exit_code == 2 and len(lines) == 1, refused.output
        assert lines[0].startswith(f"error: {path}: {message}") and not (tmp_path / "refused").exists()
    missing_size = runner.invoke(cli, ["report", str(laptop), "-o", str(tmp_path / "b"), "--batch-size", "64"])
    assert missing_size.exit_code == 2 and "no run at batch size 64 in these results (they have 1, 4)" in \
        missing_size.output


def test_truncated_result_is_named(bench_results, tmp_path):
    payload = json.loads(bench_results[0].read_text())
    del payload["runs"][0]["p50_ms"]
    path = tmp_path / "truncated.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(EdgetuneError, match=r"truncated.json: the bench result lacks 'p50_ms'"):
        rows_from_bench(path)


def test_a_schema_1_result_without_per_class_f1_still_reads(bench_results, tmp_path):
    payload = json.loads(bench_results[0].read_text())
    assert payload["schema_version"] == SCHEMA_VERSION and all(run["per_class_f1"] for run in payload["runs"])
    for run in payload["runs"]:
        del run["per_class_f1"]  # what `edgetune-runtime bench` wrote before schema 2
    payload["schema_version"] = 1
    old = tmp_path / "old.json"
    old.write_text(json.dumps(payload))
    result = report([old, bench_results[1]], tmp_path / "report", ReportConfig())
    assert [row.accuracy for row in rows_from_bench(old)] == [run["accuracy"] for run in payload["runs"]]
    assert len(result.rows) == 8 and result.front
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(payload | {"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(EdgetuneError, match=f"bench schema version {SCHEMA_VERSION + 1} is newer than this edgetune"):
        rows_from_bench(newer)


def test_one_plotter_sizes_markers_by_mb_and_sets_baselines_apart(tmp_path):
    """The run report's plot: the same plotter, with marker area by MB and the PyTorch baselines as squares;
    a baseline is on the front when nothing beats it."""
    rows = [ReportRow("teacher", 0.93, 40.0, 420.0, runs_on="PyTorch", variant="fp32", baseline=True),
            ReportRow("student", 0.90, 12.0, 86.0, runs_on="PyTorch", variant="fp32", baseline=True),
            ReportRow("teacher", 0.925, 9.0, 105.0, runs_on="edgetune-runtime", variant="dynamic-int8"),
            ReportRow("student", 0.895, 2.5, 22.0, runs_on="edgetune-runtime", variant="dynamic-int8"),
            ReportRow("student", 0.88, 3.1, 43.0, runs_on="edgetune-runtime", variant="fp16")]
    path = tmp_path / "run" / "pareto.png"
    front = write_pareto_plot(rows, path, title="edgetune run: tiny", latency_label="batch-1 p50 (ms)",
                              accuracy_label="test accuracy (%)", size_by_mb=True)
    assert front == [3, 2, 0]  # fastest first; the fp16 student and the PyTorch student are beaten
    assert path.read_bytes()[:8] == PNG_SIGNATURE and list(path.parent.iterdir()) == [path]  # no temporary left
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| name | runs on | variant | accuracy |")
    assert "| teacher | PyTorch | fp32 | 93.00% |" in table


def test_a_deeply_nested_result_from_another_device_is_one_line(tmp_path):
    path = tmp_path / "phone.json"
    path.write_text('{"schema": "edgetune-runtime-bench", "runs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(EdgetuneError, match=r"phone.json: not valid JSON \(.*nested 100001 levels deep"):
        rows_from_bench(path)
