"""The bundle manifest: one typed definition (`BundleManifest`), its format version and its own checksum.

`manifest.json` lists the sha256 of every other file; its own digest (over its canonical JSON
without the `manifest_sha256` key) is stored inside it, so an edited manifest is detected too.
The toolchain writes bundles through `BundleManifest` and the runtime reads them back through it,
so the two sides cannot disagree on a key. Task-neutral keys sit at the top; what only one task
needs sits in that task's section (`classification: {labels, ...}`), named by the task registry.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edgetune_runtime import BUNDLE_FORMAT_VERSION
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import sha256_json

MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 2**20
"""A manifest is kilobytes; a bigger file is refused before it is parsed."""
# Optional top-level keys -> the JSON type they must have when present (a sealed manifest can still be
# hand-made: `session: "fast"` must be one line, not an AttributeError deep in the session setup).
OPTIONAL_KEYS: dict[str, type | tuple[type, ...]] = {
    "session": dict,
    "metrics": dict,
    "tuned_for": dict,
    "provenance": dict,
    "golden_tolerance": (int, float),
    "verified_targets": list,
    "opset": int,
    "tokenizer": str,
    "golden": str,
    "model_ort": str,
}
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


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, excluding the digest itself."""
    return sha256_json({key: value for key, value in manifest.items() if key != "manifest_sha256"})


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
    for key, expected in OPTIONAL_KEYS.items():
        value = manifest.get(key)
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            names = " or ".join(kind.__name__ for kind in (expected if isinstance(expected, tuple) else (expected,)))
            raise BundleError(f"{where}: manifest key {key!r} should be {names.replace('dict', 'a JSON object')}, "
                              f"not {type(value).__name__} {str(value)[:40]!r}")
    tolerance = manifest.get("golden_tolerance")
    if tolerance is not None and not 0 <= tolerance <= 1:
        raise BundleError(f"{where}: manifest key 'golden_tolerance' is {tolerance}; it must be between 0 and 1")
    targets = manifest.get("verified_targets")
    if targets is not None and not all(isinstance(target, str) for target in targets):
        raise BundleError(f"{where}: manifest key 'verified_targets' should be a list of target names "
                          "(avx512-vnni, avx2, arm64)")
    if not all(isinstance(name, str) and isinstance(digest, str) for name, digest in manifest["files"].items()):
        raise BundleError(f"{where}: manifest key 'files' should map file names to sha256 strings")
    version = manifest["format_version"]
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format {version} is newer than this runtime supports "
                          f"({BUNDLE_FORMAT_VERSION}); upgrade edgetune-runtime")
    if version < 1:
        raise BundleError(f"{where}: bundle format {version} is not a valid version")
    if manifest_digest(manifest) != manifest["manifest_sha256"]:
        raise BundleError(f"{where}: the manifest was modified after the bundle was sealed (checksum mismatch)")
    from edgetune_runtime.tasks import registered_tasks

    if manifest["task"] not in registered_tasks():
        raise BundleError(f"{where}: task {manifest['task']!r} is not supported by this runtime "
                          f"(supported: {', '.join(registered_tasks())})")
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
    from edgetune_runtime.tasks import section_files

    if manifest["format_version"] == 1:
        manifest = _from_format_1(manifest)
    referenced = [("tokenizer", manifest.get("tokenizer")), ("golden examples", manifest.get("golden")),
                  ("ORT model", manifest.get("model_ort")), *section_files(manifest)]
    return [(role, name) for role, name in referenced if name is not None]


@dataclass(frozen=True)
class BundleManifest:
    """The typed contents of `manifest.json` (format 2).

    `section` is the task's own part, stored under the key its task registers
    (`edgetune_runtime.tasks.section_key`): `{"classification": {"labels": [...], ...}}`.
    """

    task: str
    """Registered task name (`text-classification`, ...): picks the class `Bundle.load` returns."""
    model: str
    """The ONNX graph's file name."""
    tokenizer: str
    """The tokenizer.json file name."""
    inputs: list[dict]
    """Graph inputs: name, dtype and shape (dynamic axes by name)."""
    outputs: list[dict]
    """Graph outputs, as `inputs`."""
    section: dict[str, Any]
    """What only this task reads (labels and max_length for classification)."""
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 of every other file in the bundle."""
    opset: int | None = None
    model_ort: str | None = None
    """model.ort for ONNX Runtime mobile/minimal builds, when shipped."""
    golden: str | None = None
    """Golden examples file: inputs with the outputs the toolchain computed, checked by `verify`."""
    golden_tolerance: float = 0.02
    """Classification: largest drift of the expected label's probability on a golden example, on any target
    (the top label must also stay unless the example is a near tie). `edgetune bundle` writes 0.15, measured
    across CPU targets; 0.02 only for a manifest without the key."""
    verified_targets: list[str] = field(default_factory=list)
    """CPU targets (`edgetune_runtime.targets`) whose kernels reproduced the golden examples when the bundle was
    built: the build machine's, and those it was checked on by emulation. Empty in older bundles."""
    session: dict[str, Any] = field(default_factory=dict)
    """Session tuning measured by the toolchain: disabled_optimizers, config_entries."""
    metrics: dict[str, Any] = field(default_factory=dict)
    tuned_for: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = BUNDLE_FORMAT_VERSION

    def to_dict(self) -> dict:
        """The JSON-ready manifest, the task's section under its registered key, unsealed."""
        from edgetune_runtime.tasks import section_key

        body = {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "section"}
        body[section_key(self.task)] = self.section
        return json.loads(json.dumps(body))  # plain JSON types only (tuples become lists)

    def sealed(self) -> dict:
        """`to_dict()` with its digest filled in: what the toolchain writes as manifest.json."""
        return seal_manifest(self.to_dict())

    def replace(self, **changes: Any) -> BundleManifest:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, manifest: dict, where: str) -> BundleManifest:
        """Validate a sealed manifest (`validate_manifest`) and type it; a format-1 manifest is read too."""
        validate_manifest(manifest, where)
        return cls.parse(manifest, where)

    @classmethod
    def parse(cls, manifest: dict, where: str) -> BundleManifest:
        """Type a manifest without checking its seal: for the toolchain's unsealed bundle while it is built.

        Bundles read from disk go through `from_dict`, which validates first.
        """
        from edgetune_runtime.tasks import section_key

        if not isinstance(manifest, dict) or not isinstance(manifest.get("task"), str):
            raise BundleError(f"{where}: the manifest names no task")
        if manifest.get("format_version") == 1:
            manifest = _from_format_1(manifest)
        key = section_key(manifest["task"])
        section = manifest.get(key)
        if not isinstance(section, dict):
            raise BundleError(f"{where}: the manifest has no {key!r} section for task {manifest['task']!r}")
        known = {item.name for item in dataclasses.fields(cls)}
        values = {name: value for name, value in manifest.items() if name in known and value is not None}
        if not isinstance(values.get("tokenizer"), str):
            raise BundleError(f"{where}: manifest key 'tokenizer' should name the tokenizer file")
        try:
            return cls(section=section, **values)
        except TypeError as error:
            raise BundleError(f"{where}: the manifest is malformed ({error})") from None


def _from_format_1(manifest: dict) -> dict:
    """Format 1 (classification only) kept pre- and post-processing at the top; format 2 has a section."""
    preprocessing = manifest.get("preprocessing") if isinstance(manifest.get("preprocessing"), dict) else {}
    postprocessing = manifest.get("postprocessing") if isinstance(manifest.get("postprocessing"), dict) else {}
    section = {key: value for key, value in {**preprocessing, **postprocessing}.items()
               if key not in ("tokenizer", "type")}
    rest = {key: value for key, value in manifest.items() if key not in ("preprocessing", "postprocessing")}
    return rest | {"tokenizer": preprocessing.get("tokenizer"), "classification": section}
