"""Hardening, second round, runtime: damaged and hostile bundles are one `BundleError` line, never a traceback.

Every case is a real bundle built by the toolchain and then damaged as a bad download, a hand-made
manifest or an attacker would: bytes flipped inside `bundle.zip`, lying sizes, encrypted or
unknown-compression members, unlisted and bomb members, ONNX external data the manifest does not
list, manifest numbers and types out of range, JSON nested past any recursion limit. Each goes
through `Bundle.load` and the device command line (`verify` and `predict`: exit 2, one `error:` line).
"""

from __future__ import annotations

import json
import shutil
import struct
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


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir) -> Path:
    output = tmp_path_factory.mktemp("round2_runtime_bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(zip=False, ort_format=False, golden_examples=4))
    return output


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _reseal(bundle: Path, manifest: dict) -> None:
    """What a hand-made or hostile manifest looks like: any content, correctly sealed, every file hashed."""
    manifest["files"] = {name: sha256_file(bundle / name) for name in manifest["files"]}
    (bundle / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))


def _zip(bundle: Path, archive_path: Path, compression: int = zipfile.ZIP_DEFLATED,
         extra: Callable[[zipfile.ZipFile], None] | None = None) -> Path:
    with zipfile.ZipFile(archive_path, "w", compression) as archive:
        for path in sorted(bundle.iterdir()):
            archive.write(path, path.name)
        if extra:
            extra(archive)
    return archive_path


def _central_entry(data: bytes, name: str) -> int:
    """Offset of `name`'s central-directory record (signature PK\\1\\2; the name starts 46 bytes in)."""
    offset = 0
    while True:
        offset = data.index(b"PK\x01\x02", offset)
        length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46:offset + 46 + length] == name.encode():
            return offset
        offset += 4


def _patched_zip(bundle: Path, tmp: Path, patch: Callable[[bytearray], None],
                 compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path = _zip(bundle, tmp / "bundle.zip", compression)
    data = bytearray(path.read_bytes())
    patch(data)
    path.write_bytes(bytes(data))
    return path


def _model_data_offset(data: bytearray) -> int:
    """Where model.onnx's (compressed) bytes start, from its local header (PK\\3\\4)."""
    offset = _central_entry(bytes(data), "model.onnx")
    local = struct.unpack_from("<I", data, offset + 42)[0]
    name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
    return local + 30 + name_length + extra_length


def _flip_stored_model_byte(bundle: Path, tmp: Path) -> Path:
    def patch(data: bytearray) -> None:
        data[_model_data_offset(data) + 5000] ^= 0x01  # one bit: the CRC no longer matches
    return _patched_zip(bundle, tmp, patch, zipfile.ZIP_STORED)


def _flip_deflated_model_bytes(bundle: Path, tmp: Path) -> Path:
    def patch(data: bytearray) -> None:
        start = _model_data_offset(data)
        for position in range(start + 10, start + 4000, 97):  # a burst of flips: the deflate stream breaks
            data[position] ^= 0xFF
    return _patched_zip(bundle, tmp, patch)


def _size_field_patch(field_offset: int, change: Callable[[int], int]) -> Callable[[bytearray], None]:
    def patch(data: bytearray) -> None:
        offset = _central_entry(bytes(data), "model.onnx") + field_offset
        struct.pack_into("<I", data, offset, change(struct.unpack_from("<I", data, offset)[0]))
    return patch


def _uncompressed_size_understated(bundle: Path, tmp: Path) -> Path:
    return _patched_zip(bundle, tmp, _size_field_patch(24, lambda size: size // 2))


def _uncompressed_size_overstated(bundle: Path, tmp: Path) -> Path:
    return _patched_zip(bundle, tmp, _size_field_patch(24, lambda size: size * 3))


def _compressed_size_understated(bundle: Path, tmp: Path) -> Path:
    return _patched_zip(bundle, tmp, _size_field_patch(20, lambda size: size // 3))


def _encrypted_member(bundle: Path, tmp: Path) -> Path:
    def patch(data: bytearray) -> None:
        offset = _central_entry(bytes(data), "model.onnx") + 8
        struct.pack_into("<H", data, offset, struct.unpack_from("<H", data, offset)[0] | 0x1)
    return _patched_zip(bundle, tmp, patch)


def _unknown_compression(bundle: Path, tmp: Path) -> Path:
    def patch(data: bytearray) -> None:
        struct.pack_into("<H", data, _central_entry(bytes(data), "model.onnx") + 10, 99)  # AES: not supported
    return _patched_zip(bundle, tmp, patch)


def _truncated_in_the_data(bundle: Path, tmp: Path) -> Path:
    path = _zip(bundle, tmp / "bundle.zip")
    data = path.read_bytes()
    # The central directory kept (a resumed download that lost a block in the middle): members run short.
    start = _model_data_offset(bytearray(data))
    path.write_bytes(data[:start + 100] + data[start + 60_000:])
    return path


def _truncated_tail(bundle: Path, tmp: Path) -> Path:
    path = _zip(bundle, tmp / "bundle.zip")
    path.write_bytes(path.read_bytes()[:-30])
    return path


# id -> make the damaged zip. Each must be one BundleError line, never zipfile/zlib/EOF errors.
DAMAGED_ZIPS = {
    "crc-error-stored-member": _flip_stored_model_byte,
    "corrupt-deflate-stream": _flip_deflated_model_bytes,
    "uncompressed-size-understated": _uncompressed_size_understated,
    "uncompressed-size-overstated": _uncompressed_size_overstated,
    "compressed-size-understated": _compressed_size_understated,
    "encrypted-member": _encrypted_member,
    "unknown-compression-method": _unknown_compression,
    "truncated-in-the-data": _truncated_in_the_data,
    "truncated-tail": _truncated_tail,
}


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    return copy


def _assert_one_line_refusal(path: Path, fragments: tuple[str, ...] = ()) -> str:
    with pytest.raises(BundleError) as refused:
        Bundle.load(path)
    message = str(refused.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message
    runner = CliRunner()
    for arguments in (["verify", str(path)], ["predict", str(path), "I lost my card"]):
        result = runner.invoke(runtime_cli, arguments)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2, (arguments, result.exit_code, result.stderr, result.exception)
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return message


@pytest.mark.parametrize("case", list(DAMAGED_ZIPS))
def test_damaged_zip_is_one_bundle_error(bundle_dir, tmp_path, case):
    damaged = DAMAGED_ZIPS[case](_copy(bundle_dir, tmp_path), tmp_path)
    message = _assert_one_line_refusal(damaged)
    assert "bundle.zip" in message, message


def test_the_undamaged_zip_loads(bundle_dir, tmp_path):
    archive = _zip(_copy(bundle_dir, tmp_path), tmp_path / "bundle.zip")
    assert Bundle.load(archive).verify().passed


def test_unlisted_members_are_never_unpacked(bundle_dir, tmp_path):
    # 64 MiB of zeros packs to ~64 KiB: extracted on every load and "ok" from verify before the fix.
    def add_unlisted(archive: zipfile.ZipFile) -> None:
        with archive.open("padding/huge.bin", "w") as member:
            for _ in range(64):
                member.write(bytes(1 << 20))
        archive.writestr("notes.txt", "not in the manifest")
    archive = _zip(_copy(bundle_dir, tmp_path), tmp_path / "bundle.zip", extra=add_unlisted)
    bundle = Bundle.load(archive)
    unpacked = sorted(path.relative_to(bundle.directory).as_posix()
                      for path in bundle.directory.rglob("*") if path.is_file())
    assert unpacked == sorted(["manifest.json", *bundle.manifest["files"]])
    assert bundle.verify().passed


def test_a_listed_zip_bomb_member_stops_at_the_compression_ratio(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    with open(copy / "padding.bin", "wb") as handle:  # listed and hashed: only the ratio can stop it
        for _ in range(256):
            handle.write(bytes(1 << 20))
    manifest = _manifest(copy)
    manifest["files"]["padding.bin"] = ""
    _reseal(copy, manifest)
    archive = _zip(copy, tmp_path / "bundle.zip")
    assert archive.stat().st_size < 2 << 20
    _assert_one_line_refusal(archive, ("unpacks to more than 200 times its packed size",))


def test_deep_and_long_member_paths_are_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    deep = _zip(copy, tmp_path / "deep.zip", extra=lambda archive: archive.writestr("a/" * 200 + "x", "x"))
    _assert_one_line_refusal(deep, ("folders deep",))


def _with_external_data(bundle: Path, listed: bool) -> None:
    import onnx

    model = onnx.load(str(bundle / "model.onnx"))
    onnx.save_model(model, str(bundle / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    manifest = _manifest(bundle)
    if listed:
        manifest["files"]["weights.bin"] = ""
    _reseal(bundle, manifest)


def test_unlisted_onnx_external_data_is_refused(bundle_dir, tmp_path):
    # The weights move to weights.bin, which the resealed manifest does not list: changing it would
    # change predictions without failing any hash, so the bundle is refused (directory and zip alike).
    copy = _copy(bundle_dir, tmp_path)
    _with_external_data(copy, listed=False)
    _assert_one_line_refusal(copy, ("reads external data from 'weights.bin'", "does not list"))
    _assert_one_line_refusal(_zip(copy, tmp_path / "bundle.zip"), ("weights.bin",))


def test_listed_onnx_external_data_loads_and_is_hashed(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    _with_external_data(copy, listed=True)
    expected = Bundle.load(bundle_dir).predict_proba(["I lost my card", "top up failed"])
    assert (Bundle.load(copy).predict_proba(["I lost my card", "top up failed"]) == expected).all()
    zipped = Bundle.load(_zip(copy, tmp_path / "bundle.zip"))
    assert (zipped.predict_proba(["I lost my card", "top up failed"]) == expected).all()
    data = bytearray((copy / "weights.bin").read_bytes())
    data[100] ^= 0x01
    (copy / "weights.bin").write_bytes(bytes(data))
    _assert_one_line_refusal(copy, ("weights.bin does not match its sha256",))


def _section_change(key: str, value: object) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        manifest["classification"][key] = value
    return change


def _top_change(key: str, value: object) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        manifest[key] = value
    return change


# id -> (change to a sealed manifest, fragment of the one error line)
BAD_MANIFEST_VALUES = {
    "max_length-1e9": (_section_change("max_length", 10**9), "max_length is int 1000000000"),
    "max_length-2**62": (_section_change("max_length", 2**62), "max_length is int 4611686018427387904"),
    "max_length-string": (_section_change("max_length", "128"), "max_length is str '128'"),
    "max_length-float": (_section_change("max_length", 128.5), "max_length is float"),
    "max_length-bool": (_section_change("max_length", True), "max_length is bool"),
    "max_length-zero": (_section_change("max_length", 0), "max_length is int 0"),
    # within the sane bound, past the tiny model's position table: ONNX Runtime would fail on the first long text
    "max_length-past-position-table": (_section_change("max_length", 4096), "longer than the model's 128 positions"),
    "labels-a-string": (_section_change("labels", "abcd"), "labels should be a non-empty list of strings"),
    "labels-numbers": (_section_change("labels", [1, 2, 3, 4]), "labels should be a non-empty list of strings"),
    "labels-nested": (_section_change("labels", [["a"], "b", "c", "d"]), "non-empty list of strings"),
    "labels-mapping": (_section_change("labels", {"a": 1}), "non-empty list of strings"),
    "pad_id-huge": (_section_change("pad_id", 10**12), "pad_id 1000000000000 is not a token id"),
    "pad_id-negative": (_section_change("pad_id", -1), "pad_id is int -1"),
    "pad_id-string": (_section_change("pad_id", "0"), "pad_id is str '0'"),
    "pad_id-bool": (_section_change("pad_id", False), "pad_id is bool"),
    "session-a-string": (_top_change("session", "fast"), "manifest key 'session' should be a JSON object"),
    "session-a-list": (_top_change("session", ["fast"]), "manifest key 'session' should be a JSON object"),
    "golden_tolerance-string": (_top_change("golden_tolerance", "0.1"), "'golden_tolerance' should be"),
    "golden_tolerance-huge": (_top_change("golden_tolerance", 1e300), "must be between 0 and 1"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFEST_VALUES))
def test_manifest_numbers_and_types_are_bounded(bundle_dir, tmp_path, case):
    change, fragment = BAD_MANIFEST_VALUES[case]
    copy = _copy(bundle_dir, tmp_path)
    manifest = _manifest(copy)
    change(manifest)
    _reseal(copy, manifest)
    _assert_one_line_refusal(copy, (fragment,))


DEPTH = 100_000  # far past Python's recursion limit: json.loads alone raises RecursionError


def test_deeply_nested_manifest_is_one_line(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    text = (copy / "manifest.json").read_text()
    (copy / "manifest.json").write_text(text.rstrip()[:-1] + ', "provenance": ' + "[" * DEPTH + "]" * DEPTH + "}")
    _assert_one_line_refusal(copy, ("nested 100001 levels deep",))
    _assert_one_line_refusal(_zip(copy, tmp_path / "bundle.zip"), ("nested 100001 levels deep",))


def test_deeply_nested_golden_file_is_one_line_on_verify(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    (copy / _manifest(copy)["golden"]).write_text("[" * DEPTH + "]" * DEPTH)
    _reseal(copy, _manifest(copy))
    with pytest.raises(BundleError, match="nested 100000 levels deep"):
        Bundle.load(copy).verify()
    result = CliRunner().invoke(runtime_cli, ["verify", str(copy)])
    assert result.exit_code == 2 and "nested 100000 levels deep" in result.stderr, result.stderr


def test_a_full_temp_dir_while_unpacking_is_one_line_and_leaves_nothing(bundle_dir, tmp_path):
    import subprocess
    import sys

    archive = _zip(_copy(bundle_dir, tmp_path), tmp_path / "bundle.zip")
    temp = tmp_path / "temp"
    temp.mkdir()
    # A real limit: files over 64 KiB cannot be written (model.onnx unpacks to more), as on a full disk.
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
            "from edgetune_runtime.cli import main\nsys.argv = ['edgetune-runtime', *sys.argv[1:]]\nmain()\n")
    result = subprocess.run([sys.executable, "-c", code, "verify", str(archive)], capture_output=True, text=True,
                            timeout=120, env={**__import__("os").environ, "TMPDIR": str(temp)})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "cannot unpack" in lines[0] and "TMPDIR" in lines[0], lines
    assert list(temp.iterdir()) == []
