"""Record in a sealed bundle the CPU targets its golden examples were reproduced on (scripts/emulate.sh --record).

    python -m edgetune.bundle.targets BUNDLE_DIR avx2 arm64

The manifest is checked first (seal and every file's sha256), then re-sealed with the targets added and
replaced atomically; a zip written beside the directory (`--zip`) is rewritten from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune_runtime.atomic_write import write_text_atomic
from edgetune_runtime.envelope import verify_files
from edgetune_runtime.manifest import MANIFEST_FILE, seal_manifest
from edgetune_runtime.targets import TARGETS


def record_verified_targets(bundle_dir: str | Path, targets: list[str]) -> list[str]:
    """Add `targets` to the bundle's `verified_targets`; returns the new list. Call only after they verified."""
    from edgetune.bundle.build import write_bundle_zip
    from edgetune.bundle.zip_path import zip_path_for

    bundle_dir = Path(bundle_dir)
    unknown = [target for target in targets if target not in TARGETS]
    if unknown:
        raise EdgetuneError(f"{unknown[0]!r} is not a CPU target; choose from {', '.join(TARGETS)}")
    if not bundle_dir.is_dir():
        raise EdgetuneError(f"{bundle_dir}: targets are recorded in a bundle directory (not a zip); "
                            "run the emulated checks on the directory")
    manifest = verify_files(bundle_dir)
    recorded = list(manifest.get("verified_targets") or [])
    recorded += [target for target in targets if target not in recorded]
    sealed = seal_manifest({**manifest, "verified_targets": recorded})
    write_text_atomic(bundle_dir / MANIFEST_FILE, json.dumps(sealed, indent=2, ensure_ascii=False) + "\n")
    zip_path = zip_path_for(bundle_dir)
    if zip_path.is_file():
        write_bundle_zip(bundle_dir, zip_path, bundle_dir.name)
    return recorded


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m edgetune.bundle.targets BUNDLE_DIR TARGET...")
    try:
        print(f"{sys.argv[1]}: verified on {', '.join(record_verified_targets(sys.argv[1], sys.argv[2:]))}")
    except EdgetuneError as error:
        sys.exit(f"error: {error}")
