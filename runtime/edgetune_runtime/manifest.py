"""The bundle manifest: its schema, its format version and its own checksum.

`manifest.json` lists the sha256 of every other file; its own digest (over its canonical JSON
without the `manifest_sha256` key) is stored inside it, so an edited manifest is detected too.
"""

from __future__ import annotations

import hashlib
import json

from edgetune_runtime import BUNDLE_FORMAT_VERSION
from edgetune_runtime.errors import BundleError

MANIFEST_FILE = "manifest.json"
# key -> required type: the minimum a runtime needs to run and check a bundle.
REQUIRED_KEYS: dict[str, type] = {
    "format_version": int,
    "task": str,
    "model": str,
    "inputs": list,
    "outputs": list,
    "files": dict,
    "manifest_sha256": str,
}
SUPPORTED_TASKS = ("text-classification",)


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, excluding the digest itself."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_manifest(manifest: dict) -> dict:
    """Return `manifest` with its digest filled in (the toolchain calls this last)."""
    return manifest | {"manifest_sha256": manifest_digest(manifest)}


def validate_manifest(manifest: object, where: str) -> dict:
    """Check schema, format version and checksum; raise `BundleError` naming the first problem."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: the manifest is not a JSON object")
    for key, expected in REQUIRED_KEYS.items():
        if key not in manifest:
            raise BundleError(f"{where}: the manifest has no {key!r}")
        if not isinstance(manifest[key], expected) or isinstance(manifest[key], bool):
            raise BundleError(f"{where}: manifest key {key!r} should be {expected.__name__}")
    version = manifest["format_version"]
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format {version} is newer than this runtime supports "
                          f"({BUNDLE_FORMAT_VERSION}); upgrade edgetune-runtime")
    if version < 1:
        raise BundleError(f"{where}: bundle format {version} is not a valid version")
    if manifest_digest(manifest) != manifest["manifest_sha256"]:
        raise BundleError(f"{where}: the manifest was modified after the bundle was sealed (checksum mismatch)")
    if manifest["task"] not in SUPPORTED_TASKS:
        raise BundleError(f"{where}: task {manifest['task']!r} is not supported by this runtime "
                          f"(supported: {', '.join(SUPPORTED_TASKS)})")
    if manifest["model"] not in manifest["files"]:
        raise BundleError(f"{where}: the model file {manifest['model']!r} is not listed in the manifest's files")
    # Every file the runtime opens must be one whose sha256 was checked: a re-sealed manifest could
    # otherwise point the tokenizer or golden examples at any file on the device.
    for role, name in _files_read_by_the_runtime(manifest):
        if not isinstance(name, str) or name not in manifest["files"]:
            raise BundleError(f"{where}: the {role} file {name!r} is not one of the bundle's listed files; "
                              "refusing the bundle")
    return manifest


def _files_read_by_the_runtime(manifest: dict) -> list[tuple[str, object]]:
    preprocessing = manifest.get("preprocessing")
    postprocessing = manifest.get("postprocessing")
    referenced = [("tokenizer", preprocessing.get("tokenizer") if isinstance(preprocessing, dict) else None),
                  ("labels", postprocessing.get("labels_file") if isinstance(postprocessing, dict) else None),
                  ("golden examples", manifest.get("golden")), ("ORT model", manifest.get("model_ort"))]
    return [(role, name) for role, name in referenced if name is not None]
