"""Safe extraction of zipped bundles: no absolute paths, no `..`, no links, no surprises."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from edgetune_runtime.errors import BundleError

_MAX_UNPACKED_BYTES = 4 * 2**30  # a zip bomb stops here; real bundles are megabytes


def safe_extract(archive_path: Path, destination: Path) -> Path:
    """Extract `archive_path` into `destination`; return the folder holding manifest.json."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile as error:
        raise BundleError(f"{archive_path}: not a valid zip file ({error})") from None
    with archive:
        total = 0
        for info in archive.infolist():
            name = info.filename
            path = PurePosixPath(name)
            if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
                raise BundleError(f"{archive_path}: member {name!r} has an absolute path; refusing the bundle")
            if ".." in path.parts or "\\" in name:
                raise BundleError(f"{archive_path}: member {name!r} points outside the bundle; refusing it")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleError(f"{archive_path}: member {name!r} is a symbolic link; bundles hold plain files only")
            total += info.file_size
            if total > _MAX_UNPACKED_BYTES:
                raise BundleError(f"{archive_path}: unpacks to more than {_MAX_UNPACKED_BYTES >> 30} GiB; refusing it")
        archive.extractall(destination)
    manifests = sorted(destination.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise BundleError(f"{archive_path}: no manifest.json inside; not an edgetune bundle")
    return manifests[0].parent
