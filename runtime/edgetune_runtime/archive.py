"""Safe extraction of zipped bundles: the manifest first, then only the files it lists, within a byte budget.

A zip comes from elsewhere (a download, a copy) and may be damaged or hostile, so nothing in it is
trusted before the manifest vouches for it:
- `manifest.json` is read first (bounded size and JSON depth) and its seal and schema validated;
- only the files the manifest lists are extracted; anything else in the zip is never written or read;
- each member is streamed out with a byte budget counting what is actually written (a header's sizes
  can lie) and a compression-ratio bound, so a zip bomb stops after a few megabytes;
- names are checked: no absolute paths, `..`, backslashes, links, or unbounded depth and length;
- every way zipfile/zlib can fail on a damaged archive (CRC error, truncated file, lying sizes,
  encrypted or unknown-compression members) is one `BundleError` line, as is a full temp disk.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from edgetune_runtime.errors import BundleError
from edgetune_runtime.json_limits import JSONTooDeep, loads_bounded
from edgetune_runtime.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, validate_manifest

MAX_UNPACKED_BYTES = 4 * 2**30
"""A zip bomb stops here, counted as bytes are written; real bundles are megabytes."""
MAX_COMPRESSION_RATIO = 200
"""Unpacked/packed bytes per member beyond the first MiB: ONNX weights pack ~1.1x, JSON ~5x, a bomb ~1000x."""
MAX_MEMBER_NAME_CHARACTERS = 255
MAX_MEMBER_DEPTH = 16
_CHUNK = 1 << 20
# What zipfile and zlib raise for a damaged archive, beyond BadZipFile (a subclass of none of these).
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
            OverflowError, KeyError)


def safe_extract(archive_path: Path, destination: Path) -> Path:
    """Extract the manifest and the files it lists from `archive_path` into `destination`; return that folder."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            return _extract_listed(archive, archive_path, destination)
    except BundleError:
        raise
    except _DAMAGED as error:
        raise BundleError(f"{archive_path}: not a valid zip file, or a damaged one "
                          f"({type(error).__name__}: {_first_line(error)}); download or copy it again") from None
    except OSError as error:
        if error.filename is None or Path(error.filename) == Path(archive_path):
            # Reading the archive itself failed (a truncated file reads short as an OSError too).
            raise BundleError(f"{archive_path}: cannot read the zip ({error.strerror or error})") from None
        raise BundleError(f"{archive_path}: cannot unpack into {destination} ({error.strerror or error}); "
                          "free space there or set TMPDIR to a folder with room") from None


def _extract_listed(archive: zipfile.ZipFile, archive_path: Path, destination: Path) -> Path:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        _check_member(info, archive_path)
        members.setdefault(info.filename, info)
    # The manifest nearest the root; a bundle zipped with its folder keeps everything under one prefix.
    manifests = sorted((name for name in members if PurePosixPath(name).name == MANIFEST_FILE
                        and not members[name].is_dir()), key=lambda name: (name.count("/"), name))
    if not manifests:
        raise BundleError(f"{archive_path}: no {MANIFEST_FILE} inside; not an edgetune bundle")
    manifest_member = manifests[0]
    prefix = manifest_member[: -len(MANIFEST_FILE)]
    budget = _Budget(archive_path)
    manifest_bytes = _read_member(archive, members[manifest_member], budget, MAX_MANIFEST_BYTES)
    where = f"{archive_path}:{manifest_member}"
    try:
        manifest = loads_bounded(manifest_bytes, where)
    except JSONTooDeep as error:
        raise BundleError(str(error)) from None
    except ValueError as error:
        raise BundleError(f"{where}: not valid JSON ({error})") from None
    validate_manifest(manifest, where)
    root = destination / prefix if prefix else destination
    root.mkdir(parents=True, exist_ok=True)
    _write(root / MANIFEST_FILE, [manifest_bytes])
    for name in manifest["files"]:
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in PurePosixPath(name).parts \
                or "\\" in name or len(name) > MAX_MEMBER_NAME_CHARACTERS:
            raise BundleError(f"{where}: listed file {name!r} is not a plain relative name inside the bundle")
        info = members.get(prefix + name)
        if info is None or info.is_dir():
            raise BundleError(f"{archive_path}: {name} is listed in the manifest but missing from the zip")
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, _chunks(archive, info, budget))
    return root


def _check_member(info: zipfile.ZipInfo, archive_path: Path) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"{archive_path}: member {name!r} has an absolute path; refusing the bundle")
    if ".." in path.parts or "\\" in name:
        raise BundleError(f"{archive_path}: member {name!r} points outside the bundle; refusing it")
    if len(name) > MAX_MEMBER_NAME_CHARACTERS * 4 or len(path.parts) > MAX_MEMBER_DEPTH:
        raise BundleError(f"{archive_path}: member {name[:80]!r}... has a path {len(name)} characters long "
                          f"and {len(path.parts)} folders deep (at most {MAX_MEMBER_DEPTH}); refusing the bundle")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BundleError(f"{archive_path}: member {name!r} is a symbolic link; bundles hold plain files only")
    if info.flag_bits & 0x1:
        raise BundleError(f"{archive_path}: member {name!r} is encrypted; bundles are never encrypted - "
                          "rebuild or download it again")


class _Budget:
    """Bytes written so far, across members: what is actually unpacked, not what the headers claim."""

    def __init__(self, archive_path: Path) -> None:
        self.archive_path = archive_path
        self.written = 0

    def take(self, info: zipfile.ZipInfo, member_written: int) -> None:
        if self.written > MAX_UNPACKED_BYTES:
            raise BundleError(f"{self.archive_path}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB; "
                              "refusing it")
        if member_written > _CHUNK and member_written > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise BundleError(f"{self.archive_path}: member {info.filename!r} unpacks to more than "
                              f"{MAX_COMPRESSION_RATIO} times its packed size (a zip bomb); refusing the bundle")
        if member_written > info.file_size:
            raise BundleError(f"{self.archive_path}: member {info.filename!r} unpacks to more bytes than its "
                              "header says; the zip is damaged or forged")


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget):
    member_written = 0
    with archive.open(info) as source:
        while chunk := source.read(_CHUNK):
            member_written += len(chunk)
            budget.written += len(chunk)
            budget.take(info, member_written)
            yield chunk
    if member_written != info.file_size:  # a deflate stream can end early with a valid CRC
        raise BundleError(f"{budget.archive_path}: member {info.filename!r} unpacks to {member_written} bytes but "
                          f"its header says {info.file_size}; the zip is damaged or forged")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, limit: int) -> bytes:
    if info.file_size > limit:
        raise BundleError(f"{budget.archive_path}: {info.filename} is {info.file_size} bytes; a manifest is "
                          f"at most {limit >> 20} MiB")
    return b"".join(_chunks(archive, info, budget))


def _write(target: Path, chunks: Iterable[bytes]) -> None:
    try:
        with open(target, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
    except OSError as error:
        if error.filename is not None:
            raise
        # A full disk or a file-size limit names no file: name the one being unpacked.
        raise OSError(error.errno, error.strerror, str(target)) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no detail"
