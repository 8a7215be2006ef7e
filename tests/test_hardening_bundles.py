"""Hardening, unsafe bundles: every way a bundle can be tampered with, broken or made hostile is refused.

Each case goes through the device's own command (`edgetune-runtime verify` and `predict`) and must end
with exit status 2 and one `error:` line naming the problem; a few run as real processes with the
heavy stack blocked, as on a device. Nothing on the runtime path may unpickle: a source scan proves
it, and a pickle smuggled into a bundle is refused without ever being executed.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.cli import main as runtime_cli
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_file
from edgetune_runtime.manifest import seal_manifest

RUNTIME_SOURCE = Path(__file__).resolve().parents[1] / "runtime" / "edgetune_runtime"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir) -> Path:
    output = tmp_path_factory.mktemp("hardening_bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(zip=True, ort_format=False, golden_examples=4))
    return output


class _Pwned:
    """Unpickling this writes a marker file: proof that bundle content was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "executed"))


def _pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_Pwned(marker))


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _write_manifest(bundle: Path, manifest: dict, *, seal: bool = True) -> None:
    (bundle / "manifest.json").write_text(json.dumps(seal_manifest(manifest) if seal else manifest))


def _reseal_with_file(bundle: Path, name: str) -> None:
    """What a careful attacker does: change a file and re-seal the manifest with its new hash."""
    manifest = _manifest(bundle)
    manifest["files"][name] = sha256_file(bundle / name)
    _write_manifest(bundle, manifest)


# Each case turns a good bundle copy (a directory) into a bad bundle and returns the path to load.
def _flip_model_byte(bundle: Path, tmp: Path) -> Path:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    return bundle


def _edit_manifest_labels(bundle: Path, tmp: Path) -> Path:
    manifest = _manifest(bundle)
    manifest["classification"]["labels"][0] = "transfer_all_money"
    _write_manifest(bundle, manifest, seal=False)
    return bundle


def _manifest_not_json(bundle: Path, tmp: Path) -> Path:
    (bundle / "manifest.json").write_text("{not json")
    return bundle


def _manifest_deleted(bundle: Path, tmp: Path) -> Path:
    (bundle / "manifest.json").unlink()
    return bundle


def _manifest_key_missing(bundle: Path, tmp: Path) -> Path:
    manifest = _manifest(bundle)
    del manifest["files"]
    _write_manifest(bundle, manifest)
    return bundle


def _manifest_key_wrong_type(bundle: Path, tmp: Path) -> Path:
    _write_manifest(bundle, _manifest(bundle) | {"format_version": "1"})
    return bundle


def _tokenizer_deleted(bundle: Path, tmp: Path) -> Path:
    (bundle / "tokenizer.json").unlink()
    return bundle


def _newer_format(bundle: Path, tmp: Path) -> Path:
    _write_manifest(bundle, _manifest(bundle) | {"format_version": 99})
    return bundle


def _unsupported_task(bundle: Path, tmp: Path) -> Path:
    _write_manifest(bundle, _manifest(bundle) | {"task": "speech-recognition"})
    return bundle


def _symlink_outside(bundle: Path, tmp: Path) -> Path:
    outside = tmp / "outside-labels.json"
    shutil.copy2(bundle / "labels.json", outside)
    (bundle / "labels.json").unlink()
    (bundle / "labels.json").symlink_to(outside)
    return bundle


def _listed_file_outside(bundle: Path, tmp: Path) -> Path:
    (tmp / "outside.txt").write_text("secret")
    manifest = _manifest(bundle)
    manifest["files"]["../outside.txt"] = sha256_file(tmp / "outside.txt")
    _write_manifest(bundle, manifest)
    return bundle


def _listed_absolute_path(bundle: Path, tmp: Path) -> Path:
    (tmp / "absolute.txt").write_text("secret")
    manifest = _manifest(bundle)
    manifest["files"][str(tmp / "absolute.txt")] = sha256_file(tmp / "absolute.txt")
    _write_manifest(bundle, manifest)
    return bundle


def _tokenizer_outside_unlisted(bundle: Path, tmp: Path) -> Path:
    # The tokenizer path is read from the manifest: it must be a listed (hashed) file of the bundle.
    shutil.copy2(bundle / "tokenizer.json", tmp / "evil-tokenizer.json")
    manifest = _manifest(bundle)
    manifest["tokenizer"] = "../evil-tokenizer.json"
    _write_manifest(bundle, manifest)
    return bundle


def _golden_outside_unlisted(bundle: Path, tmp: Path) -> Path:
    shutil.copy2(bundle / "golden.json", tmp / "evil-golden.json")
    _write_manifest(bundle, _manifest(bundle) | {"golden": "../evil-golden.json"})
    return bundle


def _resealed_model_is_a_pickle(bundle: Path, tmp: Path) -> Path:
    (bundle / "model.onnx").write_bytes(_pickle_payload(tmp / "pwned-model"))
    _reseal_with_file(bundle, "model.onnx")
    return bundle


def _resealed_tokenizer_is_garbage(bundle: Path, tmp: Path) -> Path:
    (bundle / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    _reseal_with_file(bundle, "tokenizer.json")
    return bundle


def _resealed_labels_do_not_fit_the_model(bundle: Path, tmp: Path) -> Path:
    manifest = _manifest(bundle)
    manifest["classification"]["labels"] = manifest["classification"]["labels"][:2]
    _write_manifest(bundle, manifest)
    return bundle


def _zip_of(bundle: Path, archive_path: Path, extra: Callable[[zipfile.ZipFile], None] | None = None) -> Path:
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(bundle.iterdir()):
            archive.write(path, f"b/{path.name}")
        if extra:
            extra(archive)
    return archive_path


def _zip_with_dotdot(bundle: Path, tmp: Path) -> Path:
    return _zip_of(bundle, tmp / "dotdot.zip", lambda archive: archive.writestr("b/../../evil.txt", "x"))


def _zip_with_absolute_path(bundle: Path, tmp: Path) -> Path:
    return _zip_of(bundle, tmp / "absolute.zip", lambda archive: archive.writestr("/tmp/evil.txt", "x"))


def _zip_with_symlink_member(bundle: Path, tmp: Path) -> Path:
    def add_link(archive: zipfile.ZipFile) -> None:
        link = zipfile.ZipInfo("b/passwd")
        link.external_attr = (0o120777 << 16)  # S_IFLNK: a symbolic link to /etc/passwd
        archive.writestr(link, "/etc/passwd")
    return _zip_of(bundle, tmp / "symlink.zip", add_link)


def _zip_with_changed_model(bundle: Path, tmp: Path) -> Path:
    return _zip_of(_flip_model_byte(bundle, tmp), tmp / "changed.zip")


def _zip_without_manifest(bundle: Path, tmp: Path) -> Path:
    (bundle / "manifest.json").unlink()
    return _zip_of(bundle, tmp / "nomanifest.zip")


def _not_a_zip(bundle: Path, tmp: Path) -> Path:
    path = _zip_of(bundle, tmp / "truncated.zip")
    path.write_bytes(path.read_bytes()[:1000])  # a download cut short: no central directory
    return path


# id -> (make the bad bundle, fragments the one error line must hold)
UNSAFE_BUNDLES = {
    "changed-model-bytes": (_flip_model_byte, ["model.onnx does not match its sha256"]),
    "edited-manifest": (_edit_manifest_labels, ["the manifest was modified after the bundle was sealed"]),
    "manifest-not-json": (_manifest_not_json, ["manifest.json: not valid JSON"]),
    "manifest-missing": (_manifest_deleted, ["no manifest.json; not an edgetune bundle"]),
    "manifest-key-missing": (_manifest_key_missing, ["the manifest has no 'files'"]),
    "manifest-key-wrong-type": (_manifest_key_wrong_type, ["manifest key 'format_version' should be int"]),
    "missing-file": (_tokenizer_deleted, ["tokenizer.json is listed in the manifest but missing"]),
    "newer-format-version": (_newer_format, ["bundle format 99 is newer than this runtime supports",
                                             "upgrade edgetune-runtime"]),
    "unsupported-task": (_unsupported_task, ["task 'speech-recognition' is not supported"]),
    "symlink-pointing-outside": (_symlink_outside, ["labels.json is a link or points outside the bundle"]),
    "listed-file-outside": (_listed_file_outside, ["../outside.txt is a link or points outside the bundle"]),
    "listed-absolute-path": (_listed_absolute_path, ["absolute.txt is a link or points outside the bundle"]),
    "tokenizer-outside-unlisted": (_tokenizer_outside_unlisted,
                                   ["'../evil-tokenizer.json' is not one of the bundle's listed files"]),
    "golden-outside-unlisted": (_golden_outside_unlisted,
                                ["'../evil-golden.json' is not one of the bundle's listed files"]),
    "resealed-pickle-as-model": (_resealed_model_is_a_pickle, ["model.onnx: ONNX Runtime cannot load the model"]),
    "resealed-garbage-tokenizer": (_resealed_tokenizer_is_garbage, ["tokenizer.json: cannot load the tokenizer"]),
    "resealed-labels-not-matching-model": (_resealed_labels_do_not_fit_the_model,
                                           ["the manifest lists 2 labels but the model outputs 4"]),
    "zip-with-dotdot": (_zip_with_dotdot, ["member 'b/../../evil.txt' points outside the bundle"]),
    "zip-with-absolute-path": (_zip_with_absolute_path, ["member '/tmp/evil.txt' has an absolute path"]),
    "zip-with-symlink": (_zip_with_symlink_member, ["member 'b/passwd' is a symbolic link"]),
    "zip-with-changed-model": (_zip_with_changed_model, ["model.onnx does not match its sha256"]),
    "zip-without-manifest": (_zip_without_manifest, ["no manifest.json inside; not an edgetune bundle"]),
    "truncated-zip": (_not_a_zip, ["truncated.zip: not a valid zip file"]),
}


def _make(case: str, bundle_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy, symlinks=True)
    return UNSAFE_BUNDLES[case][0](copy, tmp_path)


def _assert_refused(exit_code: int, stderr: str, fragments: list[str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code == 2 and "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", list(UNSAFE_BUNDLES))
def test_unsafe_bundle_is_refused_with_a_message_naming_the_problem(bundle_dir, tmp_path, case):
    bad = _make(case, bundle_dir, tmp_path)
    fragments = UNSAFE_BUNDLES[case][1]
    with pytest.raises(BundleError) as refused:
        Bundle.load(bad)
    assert all(fragment in str(refused.value) for fragment in fragments), str(refused.value)
    runner = CliRunner()
    for arguments in (["verify", str(bad)], ["predict", str(bad), "I lost my card"]):
        result = runner.invoke(runtime_cli, arguments)
        assert isinstance(result.exception, SystemExit), result.exception
        _assert_refused(result.exit_code, result.stderr, fragments)
        assert result.stdout == ""
    assert not list(tmp_path.glob("pwned*")), "bundle content was executed"
    assert not Path("/tmp/evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


# Python raises the audit event `pickle.find_class` whenever an unpickler resolves a global, which every
# payload that executes code must do; the hook ends the process with status 99 if it ever fires.
_NO_UNPICKLING = ("import os, sys\n"
                  "def _guard(event, args):\n"
                  "    if event == 'pickle.find_class':\n"
                  "        sys.stderr.write(f'unpickled {args}\\n'); sys.stderr.flush(); os._exit(99)\n"
                  "sys.addaudithook(_guard)\n"
                  "sys.modules['torch'] = sys.modules['transformers'] = None\n")


def _device_process(*arguments: str) -> subprocess.CompletedProcess:
    # As on a device: the heavy stack is absent, so nothing in the refusal may need it.
    code = _NO_UNPICKLING + ("from edgetune_runtime.cli import main\n"
                             "sys.argv = ['edgetune-runtime', *sys.argv[1:]]\nmain()\n")
    return subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["changed-model-bytes", "resealed-pickle-as-model", "zip-with-dotdot",
                                  "tokenizer-outside-unlisted"])
def test_unsafe_bundle_in_a_real_device_process(bundle_dir, tmp_path, case):
    bad = _make(case, bundle_dir, tmp_path)
    result = _device_process("verify", str(bad))
    _assert_refused(result.returncode, result.stderr, UNSAFE_BUNDLES[case][1])
    assert not list(tmp_path.glob("pwned*"))


def test_good_bundle_loads_verifies_and_predicts_without_unpickling(bundle_dir):
    for arguments in (("verify", str(bundle_dir.with_suffix(".zip"))), ("predict", str(bundle_dir), "my card")):
        result = _device_process(*arguments)
        assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_the_unpickling_guard_itself_fires(tmp_path):
    """The guard above must be able to fail: unpickling the payload under it ends the process with 99."""
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(_pickle_payload(tmp_path / "pwned-guard"))
    code = _NO_UNPICKLING + f"import pickle\npickle.loads(open({str(payload)!r}, 'rb').read())\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 99 and "unpickled" in result.stderr
    assert not (tmp_path / "pwned-guard").exists()


def test_pickle_payload_in_place_of_a_listed_file_is_refused_unexecuted(bundle_dir, tmp_path):
    """Every listed file in turn replaced by a pickle that would write a marker when unpickled."""
    for name in _manifest(bundle_dir)["files"]:
        copy = tmp_path / name
        shutil.copytree(bundle_dir, copy)
        (copy / name).write_bytes(_pickle_payload(tmp_path / f"pwned-{name}"))
        with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
            Bundle.load(copy)
    assert not list(tmp_path.glob("pwned-*"))


# What would load executable content: pickle and its relatives, torch, and numpy's pickle path.
_UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal",
                       "torch", "copyreg"}
_UNPICKLING_CALLS = {"load", "loads", "Unpickler"}


def test_nothing_on_the_runtime_path_unpickles():
    sources = sorted(RUNTIME_SOURCE.rglob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            assert not set(names) & _UNPICKLING_MODULES, f"{path.name}:{node.lineno} imports {names}"
            if isinstance(node, ast.Call):
                function = node.func
                dotted = ast.unparse(function)
                assert dotted not in {"eval", "exec", "__import__"}, f"{path.name}:{node.lineno}: {dotted}"
                if dotted.endswith((".load", ".loads")) and dotted.split(".")[0] in {"numpy", "np"}:
                    pytest.fail(f"{path.name}:{node.lineno}: {dotted} can unpickle object arrays")
                for keyword in node.keywords:
                    if keyword.arg == "allow_pickle":
                        pytest.fail(f"{path.name}:{node.lineno}: allow_pickle passed to {dotted}")
        assert "allow_pickle" not in text and "torch.load" not in text, path.name


@pytest.mark.parametrize(("golden", "fragment"), [
    ("{not json", "golden examples are malformed (JSONDecodeError"),
    ('[{"text": "hi", "label": "no_such_label", "probability": 0.5}]', "golden examples are malformed (ValueError"),
    ('[{"text": 7, "label": "LABEL", "probability": 0.5}]', "a golden text is not a string"),
    ('[["hi", "LABEL"]]', "golden examples are malformed (TypeError"),
], ids=["not-json", "unknown-label", "text-not-a-string", "list-not-object"])
def test_resealed_malformed_golden_examples_are_one_line_on_verify(bundle_dir, tmp_path, golden, fragment):
    """A re-sealed bundle passes its hashes; `verify` must still refuse a golden file it cannot read."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    label = _manifest(copy)["classification"]["labels"][0]
    (copy / "golden.json").write_text(golden.replace("LABEL", label))
    _reseal_with_file(copy, "golden.json")
    result = CliRunner().invoke(runtime_cli, ["verify", str(copy)])
    assert isinstance(result.exception, SystemExit), result.exception
    _assert_refused(result.exit_code, result.stderr, ["golden.json:", fragment])
