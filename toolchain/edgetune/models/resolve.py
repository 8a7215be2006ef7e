"""Turn what a user typed as a model (a local path or a hub id) into local, verified weights.

Order, stopping at the first hit, so no network is touched while a local copy exists:
  1. a local directory (or .gguf file);
  2. a packaged model (registry.py): the edgetune cache, then the package installed in this
     Python environment, then a download from the package index;
  3. the Hugging Face cache, then the Hugging Face hub itself (where a network exists).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import EdgetuneError, ModelNotFoundError
from edgetune.models.cache import cached_model_dir, verify_cached_weights
from edgetune.models.registry import PackagedModel, find_packaged_model
from edgetune_runtime.hashing import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """Local weights for a model name, and how they were found (recorded in manifests)."""

    name: str
    path: Path
    source: str
    gguf_file: str | None = None
    weights_sha256: str | None = None

    def from_pretrained_kwargs(self) -> dict:
        """Extra keyword arguments for transformers' `from_pretrained` (GGUF weights need one)."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve_model(name: str | Path, *, allow_download: bool = True) -> ResolvedModel:
    """Resolve `name` to local weights or raise `ModelNotFoundError` saying what was tried."""
    text = str(name)
    tried: list[str] = []

    local = Path(text).expanduser()
    if local.exists():
        return _resolve_local(text, local)
    tried.append(f"no local path {local}")

    packaged = find_packaged_model(text)
    if packaged is not None:
        found = _resolve_packaged(text, packaged, allow_download, tried)
        if found is not None:
            return found
        hub_id = packaged.hub_id
    else:
        hub_id = text

    if "/" in hub_id or packaged is not None:
        found = _resolve_from_hub(text, hub_id, tried)
        if found is not None:
            return found

    hint = ("run `edgetune models pull " + packaged.hub_id + "` on a machine that reaches the package index"
            if packaged else "pass a local model directory, or a hub id on a machine with a network "
            "(`edgetune models list` shows the models available without one)")
    raise ModelNotFoundError(f"model {text!r} not found: tried {'; '.join(tried)}. Fix: {hint}")


def _resolve_local(name: str, local: Path) -> ResolvedModel:
    if local.is_file() and local.suffix == ".gguf":
        return ResolvedModel(name, local.parent, "local path", gguf_file=local.name)
    if local.is_dir():
        ggufs = sorted(local.glob("*.gguf"))
        if (local / "config.json").is_file():
            return ResolvedModel(name, local, "local path")
        if len(ggufs) == 1:
            return ResolvedModel(name, local, "local path", gguf_file=ggufs[0].name)
    raise ModelNotFoundError(
        f"{local} is not a model: expected a directory with config.json (a Hugging Face model) or a .gguf file"
    )


def _resolve_packaged(name: str, model: PackagedModel, allow_download: bool, tried: list[str]) -> ResolvedModel | None:
    gguf_file = Path(model.weights_file).name if model.layout == "gguf" else None
    cached = cached_model_dir(model)
    if cached is not None:  # hashed again on every use: the manifest records the bytes actually read
        return ResolvedModel(name, cached, "edgetune cache", gguf_file, verify_cached_weights(model, cached))
    tried.append("no verified copy in the edgetune cache")

    installed = _installed_package_dir(model)
    if installed is not None:
        actual = sha256_file(installed / model.weights_file)
        if actual == model.weights_sha256:
            return ResolvedModel(name, installed, "installed package", gguf_file, actual)
        tried.append(f"installed package at {installed} has a wrong sha256 (refused)")
    if allow_download:
        from edgetune.models.pull import pull_model

        log.info("fetching %s from the package index (%s)", model.hub_id, ", ".join(model.requirements))
        try:
            directory = pull_model(model)
        except EdgetuneError as error:
            tried.append(str(error))
            return None
        return ResolvedModel(name, directory, "package index", gguf_file, verify_cached_weights(model, directory))
    tried.append("downloading was not allowed")
    return None


def _installed_package_dir(model: PackagedModel) -> Path | None:
    """The model directory inside a pip-installed copy of the package, when there is one."""
    if model.layout == "split_zip":
        return None  # the parts are zip fragments, never usable in place
    top_module = model.member.split("/")[0]
    try:
        spec = importlib.util.find_spec(top_module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    site_dir = Path(next(iter(spec.submodule_search_locations))).parent
    directory = site_dir / (model.member if model.layout == "directory" else str(Path(model.member).parent))
    return directory if (directory / model.weights_file).is_file() else None


def _resolve_from_hub(name: str, hub_id: str, tried: list[str]) -> ResolvedModel | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of transformers
        tried.append("huggingface_hub is not installed")
        return None
    try:
        return ResolvedModel(name, Path(snapshot_download(hub_id, local_files_only=True)), "hugging face cache")
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        tried.append("not in the Hugging Face cache")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        tried.append("HF_HUB_OFFLINE is set, so the hub was not asked")
        return None
    try:
        return ResolvedModel(name, Path(snapshot_download(hub_id)), "hugging face hub")
    except Exception as error:  # noqa: BLE001 - network, auth and missing repos all end here
        tried.append(f"the hub did not answer ({type(error).__name__})")
        return None
