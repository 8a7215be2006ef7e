"""Hardening round 2, `edgetune bundle --zip`: no zip is lost, hidden, shared between two outputs or left stale.

* An OUTPUT ending in `.zip` is refused in one line (main made `out.zip` a directory and hid the archive).
* The zip is `<output name>.zip`: `model-1.0` and `model-1.1` do not share `model-1.zip`.
* `--force` without `--zip` removes the previous bundle's zip with the previous directory.
* `latest/<stage>.zip` of a run follows the same naming.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgetune.cli.main import cli


def _bundle(export_dir: Path, output: Path, *extra: str):
    return CliRunner().invoke(cli, ["bundle", str(export_dir), str(output), "--golden-examples", "2", *extra])


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_an_output_ending_in_zip_is_refused_in_one_line(tmp_path, tiny_export_dir):
    result = _bundle(tiny_export_dir, tmp_path / "out.zip", "--zip")
    assert result.exit_code == 2, result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and "out.zip" in lines[0] and "ends in .zip" in lines[0], lines
    assert list(tmp_path.iterdir()) == [], "nothing is written for a refused output"


def test_outputs_that_differ_after_a_dot_get_their_own_zip(tmp_path, tiny_export_dir):
    for version in ("model-1.0", "model-1.1"):
        result = _bundle(tiny_export_dir, tmp_path / version, "--zip")
        assert result.exit_code == 0, result.output
        assert f"{version}.zip" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model-1.0", "model-1.0.zip", "model-1.1",
                                                               "model-1.1.zip"]


def test_force_without_zip_removes_the_previous_bundles_zip(tmp_path, tiny_export_dir):
    output = tmp_path / "bundle"
    assert _bundle(tiny_export_dir, output, "--zip").exit_code == 0
    assert (tmp_path / "bundle.zip").is_file()
    result = _bundle(tiny_export_dir, output, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"], "no stale zip, nothing set aside left"


def test_a_zip_left_beside_a_new_output_is_refused_without_force(tmp_path, tiny_export_dir):
    (tmp_path / "bundle.zip").write_bytes(b"an older bundle's archive")
    result = _bundle(tiny_export_dir, tmp_path / "bundle")
    assert result.exit_code == 2 and "bundle.zip already exists" in result.stderr, result.output
    assert (tmp_path / "bundle.zip").read_bytes() == b"an older bundle's archive"
    assert not (tmp_path / "bundle").exists()


def test_a_failed_forced_rebundle_keeps_the_previous_zip(tmp_path, tiny_export_dir):
    output = tmp_path / "bundle"
    assert _bundle(tiny_export_dir, output, "--zip").exit_code == 0
    archive = (tmp_path / "bundle.zip").read_bytes()
    from edgetune.bundle.build import _set_aside_on_success

    try:
        with _set_aside_on_success(tmp_path / "bundle.zip") as set_aside:
            set_aside()
            assert not (tmp_path / "bundle.zip").exists()
            raise KeyboardInterrupt  # the directory swap did not happen
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "bundle.zip").read_bytes() == archive
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle", "bundle.zip"]


def test_latest_zip_link_follows_the_appended_name(tmp_path):
    from edgetune.recipes.runner import _link_latest

    stages = tmp_path / "stages"
    output = stages / "bundle.v1-0123456789ab"
    output.mkdir(parents=True)
    (stages / "bundle.v1-0123456789ab.zip").write_bytes(b"zip")
    _link_latest(tmp_path, "bundle.v1", output)
    assert (tmp_path / "latest" / "bundle.v1").resolve() == output.resolve()
    assert (tmp_path / "latest" / "bundle.v1.zip").resolve() == (stages / "bundle.v1-0123456789ab.zip").resolve()
