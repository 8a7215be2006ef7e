"""Where a bundle's zip goes: `<output name>.zip` beside the bundle directory, appended, never a suffix swap.

`Path.with_suffix` would make outputs `model-1.0` and `model-1.1` share `model-1.zip`, so that one bundle
silently replaced the other's archive. An output that itself ends in `.zip` is refused: the directory would
take the name a user expects the archive at.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import ConfigError

ZIP_SUFFIX = ".zip"


def zip_path_for(output_dir: Path) -> Path:
    """The archive of the bundle directory `output_dir`: its name with `.zip` appended."""
    return output_dir.with_name(output_dir.name + ZIP_SUFFIX)


def check_bundle_output(output_dir: Path) -> None:
    """Refuse a bundle OUTPUT named like an archive, in one line that says what to pass instead."""
    if output_dir.name.lower().endswith(ZIP_SUFFIX):
        stem = output_dir.name[: -len(ZIP_SUFFIX)] or "bundle"
        raise ConfigError(f"bundle output {output_dir} ends in {ZIP_SUFFIX}: OUTPUT is the bundle directory; "
                          f"pass {output_dir.with_name(stem)} with --zip to also get {output_dir}")
