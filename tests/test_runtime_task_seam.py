"""The runtime's task seam: a task registered in this module alone loads, verifies and runs through `Bundle.load`.

The toy task scales a float vector by the factor in its manifest section, with a real ONNX graph
(built with onnx.helper) run by a real ONNX Runtime session; nothing outside this file knows it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy
import onnx
import pytest
from onnx import TensorProto, helper

from edgetune_runtime.bundle import Bundle, ClassificationBundle, GoldenCheck
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import MANIFEST_FILE, BundleManifest, seal_manifest
from edgetune_runtime.tasks import TaskSpec, bundle_class, register_task, registered_tasks, unregister_task

TOY_TASK = "toy-scale"
FACTOR = 3.0


class ScaleBundle(Bundle):
    """The toy task's class: only its own parts (section, probe feed, prediction, golden check)."""

    def _read_section(self, section: dict, where: str) -> None:
        try:
            self.factor = float(section["factor"])
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{where}: the manifest lacks scale key {error}") from None

    def _binding_probe_feeds(self) -> tuple[list[str], dict | None]:
        return ["y"], {"x": numpy.ones((1, 4), dtype=numpy.float32)}

    def scale(self, values: list[float]) -> list[float]:
        return self._run_batch1(["y"], {"x": numpy.array([values], dtype=numpy.float32)}, None)[0][0].tolist()

    def _parse_golden_example(self, example: dict) -> tuple[list[float], list[float]]:
        return [float(value) for value in example["x"]], [float(value) for value in example["y"]]

    def _check_golden_example(self, example: tuple[list[float], list[float]], tolerance: float) -> dict | None:
        values, expected = example
        got = self.scale(values)
        if numpy.allclose(got, expected, atol=tolerance):
            return None
        return {"x": values, "expected": expected, "got": got}


@pytest.fixture
def toy_task():
    register_task(TaskSpec(TOY_TASK, "scale", f"{__name__}:ScaleBundle", section_files=("notes_file",)))
    yield
    unregister_task(TOY_TASK)


def _scale_graph(factor: float) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _toy_manifest(directory: Path, golden: list[dict], graph_factor: float = FACTOR) -> BundleManifest:
    """Write the toy bundle's files into `directory`; return its (unsealed) manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(_scale_graph(graph_factor), directory / "model.onnx")
    (directory / "golden.json").write_text(json.dumps(golden))
    (directory / "vocab.txt").write_text("a toy task reads no tokenizer, but every bundle ships one\n")
    (directory / "notes.txt").write_text("a file the section names\n")
    files = {name: sha256_file(directory / name) for name in ("model.onnx", "golden.json", "vocab.txt", "notes.txt")}
    io = [{"name": "x", "dtype": "float32", "shape": ["batch", "width"]}]
    return BundleManifest(task=TOY_TASK, model="model.onnx", tokenizer="vocab.txt", inputs=io,
                          outputs=[{"name": "y", "dtype": "float32", "shape": ["batch", "width"]}],
                          section={"factor": FACTOR, "notes_file": "notes.txt"}, files=files, golden="golden.json")


def _seal(directory: Path, manifest: BundleManifest) -> Path:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.sealed()))
    return directory


GOLDEN = [{"x": [1.0, 2.0], "y": [3.0, 6.0]}, {"x": [0.5, -1.0, 4.0], "y": [1.5, -3.0, 12.0]}]


def test_a_task_registered_in_a_test_loads_verifies_and_runs_from_a_directory_and_a_zip(toy_task, tmp_path):
    directory = _seal(tmp_path / "toy", _toy_manifest(tmp_path / "toy", GOLDEN))
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in directory.iterdir():
            zipped.write(path, f"toy/{path.name}")
    for source in (directory, archive):
        loaded = Bundle.load(source)
        assert type(loaded) is ScaleBundle and loaded.factor == FACTOR
        assert loaded.manifest["task"] == TOY_TASK and loaded.typed_manifest.section["notes_file"] == "notes.txt"
        assert loaded.scale([1.0, -2.0]) == [3.0, -6.0]
        assert loaded.uses_compiled_binding, "the probe on the toy graph should find the binding working"
        assert loaded.verify() == GoldenCheck(2, [])


def test_the_envelope_checks_a_toy_bundle_as_it_checks_classification(toy_task, tmp_path):
    # The golden check drives the task's own checker: a graph that no longer scales by 3 fails it.
    drifted = tmp_path / "drifted"
    check = Bundle.load(_seal(drifted, _toy_manifest(drifted, GOLDEN, graph_factor=2.0))).verify()
    assert check.checked == 2 and not check.passed and check.mismatches[0]["got"] == [2.0, 4.0]
    # Every file's sha256, the section's files included, and the seal are the envelope's, for any task.
    for changed in ("model.onnx", "notes.txt"):
        copy = shutil.copytree(drifted, tmp_path / f"changed-{changed}")
        with open(copy / changed, "ab") as handle:
            handle.write(b"\0")
        with pytest.raises(BundleError, match=f"{changed} does not match its sha256"):
            Bundle.load(copy)
    edited = shutil.copytree(drifted, tmp_path / "edited")
    manifest = json.loads((edited / MANIFEST_FILE).read_text())
    manifest["scale"]["factor"] = 2.0
    (edited / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="the manifest was modified after the bundle was sealed"):
        Bundle.load(edited)
    malformed = shutil.copytree(drifted, tmp_path / "malformed")
    manifest = json.loads((malformed / MANIFEST_FILE).read_text())
    (malformed / "golden.json").write_text('[{"x": [1.0]}]')
    manifest["files"]["golden.json"] = sha256_file(malformed / "golden.json")
    (malformed / MANIFEST_FILE).write_text(json.dumps(seal_manifest(manifest)))  # re-sealed by hand
    with pytest.raises(BundleError, match=r"golden.json: the golden examples are malformed \(KeyError"):
        Bundle.load(malformed).verify()


def test_the_toolchain_builds_a_task_class_from_an_unsealed_manifest(toy_task, tmp_path):
    manifest = _toy_manifest(tmp_path / "staging", GOLDEN).to_dict()  # no seal yet: golden outputs come first
    for built in (bundle_class(TOY_TASK)(tmp_path / "staging", manifest), Bundle(tmp_path / "staging", manifest)):
        assert type(built) is ScaleBundle and built.scale([2.0]) == [6.0]


def test_a_task_class_refuses_a_bundle_of_another_task_and_unknown_tasks_are_named(toy_task, tmp_path):
    directory = _seal(tmp_path / "toy", _toy_manifest(tmp_path / "toy", GOLDEN))
    with pytest.raises(BundleError, match="a 'toy-scale' bundle is a ScaleBundle, not a ClassificationBundle"):
        ClassificationBundle.load(directory)
    unregister_task(TOY_TASK)
    assert TOY_TASK not in registered_tasks() and "text-classification" in registered_tasks()
    with pytest.raises(BundleError, match="task 'toy-scale' is not supported by this runtime"):
        Bundle.load(directory)


def test_a_toy_section_missing_its_key_is_one_line_naming_the_manifest(toy_task, tmp_path):
    manifest = _toy_manifest(tmp_path / "toy", GOLDEN)
    directory = _seal(tmp_path / "toy", manifest.replace(section={"notes_file": "notes.txt"}))
    with pytest.raises(BundleError, match=r"manifest.json: the manifest lacks scale key 'factor'"):
        Bundle.load(directory)


def test_the_cli_verifies_a_toy_bundle_and_refuses_to_predict_labels_for_it(toy_task, tmp_path):
    from click.testing import CliRunner

    from edgetune_runtime.cli import main as runtime_cli

    directory = _seal(tmp_path / "toy", _toy_manifest(tmp_path / "toy", GOLDEN))
    verified = CliRunner().invoke(runtime_cli, ["verify", str(directory)])
    assert verified.exit_code == 0 and "2 golden examples reproduce on this device" in verified.stdout
    refused = CliRunner().invoke(runtime_cli, ["predict", str(directory), "some text"])
    lines = refused.stderr.strip().splitlines()
    assert refused.exit_code == 2 and len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "a 'toy-scale' bundle is a ScaleBundle, not a ClassificationBundle" in lines[0]
