"""The task-neutral envelope of every bundle: open, verify, type the manifest, make the session, check golden examples.

`Bundle.load(path)` opens a directory or a zip, checks the manifest's seal and every file's sha256,
and returns an instance of the class the task registry names for `manifest["task"]`
(`edgetune_runtime.tasks`). A task's class subclasses `Bundle` and supplies only its own parts:
`_read_section` (its manifest section), `_prepare` (tokenizer, feeds), `_binding_probe_feeds` (one
real feed, so the batch-1 runner can be chosen) and `_check_golden_example` (or `_golden_mismatches`
for a whole batch at once), plus its prediction API.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetune_runtime.compiled_binding import SessionRun, batch1_runner
from edgetune_runtime.errors import BundleError
from edgetune_runtime.hashing import BackgroundSha256, sha256_file
from edgetune_runtime.json_limits import JSONTooDeep, loads_bounded
from edgetune_runtime.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, BundleManifest, validate_manifest
from edgetune_runtime.session import create_session, load_failure
from edgetune_runtime.tasks import bundle_class


@dataclass
class GoldenCheck:
    checked: int
    mismatches: list[dict]

    @property
    def passed(self) -> bool:
        return not self.mismatches


class Bundle:
    """A verified bundle, ready to run: use `Bundle.load(path)`, which returns the bundle's task class.

    `Bundle(directory, manifest_dict, **session_kwargs)` builds one from files already checked (the
    toolchain does this on its staging folder, before the manifest is sealed, to compute golden
    outputs); called on `Bundle` itself it too returns the task's class, as does
    `edgetune_runtime.tasks.bundle_class(task)(directory, manifest_dict)`, the documented spelling.
    """

    def __new__(cls, directory: Path, manifest: dict, **session_kwargs: Any) -> Bundle:
        if cls is Bundle:  # the envelope alone runs nothing: build the task's class instead
            task = manifest.get("task") if isinstance(manifest, dict) else None
            if not isinstance(task, str):
                raise BundleError(f"{Path(directory) / MANIFEST_FILE}: the manifest names no task")
            cls = bundle_class(task)
        return super().__new__(cls)

    def __init__(self, directory: Path, manifest: dict, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 providers: Sequence[str] | None = None, session_options=None, keepalive: object = None) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        """The manifest as read from manifest.json (a plain dict, as apps have always read it)."""
        self._keepalive = keepalive  # the temporary folder of an extracted zip lives as long as we do
        where = str(self.directory / MANIFEST_FILE)
        self.typed_manifest = BundleManifest.parse(manifest, where)
        self._read_section(self.typed_manifest.section, where)
        self._session_settings = {"intra_op_threads": intra_op_threads, "inter_op_threads": inter_op_threads,
                                  "providers": providers, "session_options": session_options}
        self._session = None
        self._session_lock = threading.Lock()
        self.uses_compiled_binding = False
        if not self._session_at_load():
            # The task runs its graph through another engine; `session` opens on first use (scoring, a bench).
            self._prepare(where)
            return
        self._session = self._open_session()
        self.input_names = [graph_input.name for graph_input in self.session.get_inputs()]
        self._prepare(where)
        # One input's runner: ONNX Runtime's compiled binding when a probe now shows it equal to the public
        # `run` (compiled_binding.py); `uses_compiled_binding` says which one predictions go through.
        output_names, probe_feeds = self._binding_probe_feeds()
        run_batch1, self.uses_compiled_binding = batch1_runner(self.session, output_names, probe_feeds)
        self._run_batch1: SessionRun = run_batch1

    @property
    def session(self):
        """The bundle's `onnxruntime.InferenceSession` (opened at load, or at first use for a task whose graph
        runs through another engine)."""
        if self._session is None:
            with self._session_lock:  # two threads' first use open one session
                if self._session is None:
                    self._session = self._open_session()
        return self._session

    @property
    def execution_provider(self) -> str:
        """The ONNX Runtime execution provider the graph runs on."""
        return self.session.get_providers()[0]

    def _open_session(self):
        model_path = self.directory / self.typed_manifest.model
        try:
            return create_session(model_path, tuning=self.manifest.get("session"), **self._session_settings)
        except Exception as error:
            failure = load_failure(model_path, error)
            if failure is None:
                raise
            raise failure from None

    @classmethod
    def load(cls, path: str | os.PathLike, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
             providers: Sequence[str] | None = None, session_options=None, **task_options: Any) -> Bundle:
        """Load a bundle directory or .zip, refusing it if any file or the manifest was changed.

        Returns the class registered for the bundle's task (a `ClassificationBundle` for text
        classification). `intra_op_threads`/`inter_op_threads` (0: ONNX Runtime chooses), `providers`
        (default CPU) and `session_options` (an `onnxruntime.SessionOptions`) set up the session;
        `task_options` go to the task's class (a generation bundle's `engine`).
        """
        path = Path(path)
        keepalive = None
        if path.is_file():
            from edgetune_runtime.archive import safe_extract

            try:
                keepalive = tempfile.TemporaryDirectory(prefix="edgetune-bundle-")
            except OSError as error:
                raise BundleError(f"{path}: cannot make a temporary folder to unpack it into ({error.strerror}); "
                                  "free space in the temp dir or set TMPDIR") from None
            try:
                directory = safe_extract(path, Path(keepalive.name))
            except BaseException:
                keepalive.cleanup()  # a half-unpacked bundle is not left in the temp dir
                raise
        elif path.is_dir():
            directory = path
        else:
            raise BundleError(f"{path}: no such bundle (expected a directory or a .zip)")
        manifest = verify_files(directory, defer_model=True)
        # The model is the one large file: its sha256 is computed on another thread while ONNX Runtime
        # builds the session, so cold start does not wait for the hash (~0.1 s for 23 MB on a CPU without
        # SHA instructions). Both read the file from disk (the page cache serves the second read): reading
        # it into memory once and loading from those bytes measured +38 MB of peak memory.
        model_name = manifest["model"]
        digest = BackgroundSha256(directory / model_name)
        try:
            # Before ONNX Runtime opens the model: the files it would read besides it must be listed (hashed).
            _refuse_unlisted_external_data(directory, manifest)
            task_class = bundle_class(manifest["task"])
            if not issubclass(task_class, cls):
                raise BundleError(f"{directory}: a {manifest['task']!r} bundle is a {task_class.__name__}, "
                                  f"not a {cls.__name__}; it cannot run here (Bundle.load opens any task)")
            bundle = task_class(directory, manifest, intra_op_threads=intra_op_threads,
                                inter_op_threads=inter_op_threads, providers=providers,
                                session_options=session_options, keepalive=keepalive, **task_options)
        finally:
            # Whatever happened while loading, a changed model is reported as such, not as what it broke.
            _check_sha256(directory, model_name, digest.hexdigest(), manifest)
        return bundle

    def verify(self) -> GoldenCheck:
        """Run the golden examples shipped in the bundle and report any disagreement."""
        try:
            tolerance = float(self.manifest.get("golden_tolerance", 0.02))
        except (ValueError, TypeError) as error:
            raise BundleError(f"{self.directory}: golden_tolerance is malformed ({error})") from None
        parsed = self.golden_examples()
        return GoldenCheck(len(parsed), self._golden_mismatches(parsed, tolerance))

    def golden_examples(self) -> list:
        """The shipped golden examples, parsed by the task (`_parse_golden_example`)."""
        golden_name = self.manifest.get("golden")
        if not golden_name:
            raise BundleError(f"{self.directory}: the bundle ships no golden examples")
        path = self.directory / golden_name
        try:  # hashed with the bundle, but a re-sealed bundle can still carry a malformed file
            examples = loads_bounded(path.read_bytes(), str(path))
            if not isinstance(examples, list):
                raise TypeError("the golden file is not a list of examples")
            return [self._parse_golden_example(example) for example in examples]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise BundleError(f"{path}: the golden examples are malformed ({type(error).__name__}: {error})") from None

    # --- what a task supplies -------------------------------------------------------------------------------

    def _read_section(self, section: dict, where: str) -> None:
        """Read the task's manifest section, raising `BundleError` (naming `where`) for what is missing."""

    def _prepare(self, where: str) -> None:
        """Set up what runs beside the session (tokenizer, feed builder), checking it fits the graph."""

    def _session_at_load(self) -> bool:
        """Whether the graph runs through the envelope's ONNX Runtime session, opened (and probed) at load."""
        return True

    def _binding_probe_feeds(self) -> tuple[list[str], dict | None]:
        """Output names and one real feed for the batch-1 runner's probe; no feed: the public `run`."""
        return [output.name for output in self.session.get_outputs()], None

    def _parse_golden_example(self, example: object) -> Any:
        """One golden example, checked and typed; raise ValueError/KeyError/TypeError if malformed."""
        return example

    def _golden_mismatches(self, examples: list, tolerance: float) -> list[dict]:
        """The examples the bundle no longer reproduces; override to run them as one batch."""
        return [mismatch for example in examples
                if (mismatch := self._check_golden_example(example, tolerance)) is not None]

    def _check_golden_example(self, example: Any, tolerance: float) -> dict | None:
        """None if the bundle reproduces `example` within `tolerance`, else a dict describing the difference."""
        raise NotImplementedError(f"{type(self).__name__} does not check golden examples")

    def first_result(self, text: str) -> object:
        """The result of an app's first call on `text` (a prediction, a first token): what cold start times."""
        raise NotImplementedError(f"{type(self).__name__} does not say what its first result is")


def verify_files(directory: Path, defer_model: bool = False) -> dict:
    """Validate the manifest and the sha256 of every file it lists; refuse unlisted links.

    With `defer_model` the model file's content hash is left to the caller (`Bundle.load` hashes
    the model while it loads it); the model is still checked to exist and to stay inside.
    """
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST_FILE}; not an edgetune bundle")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: {manifest_path.stat().st_size} bytes; a manifest is at most "
                          f"{MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        manifest = loads_bounded(manifest_path.read_bytes(), str(manifest_path))
    except JSONTooDeep as error:
        raise BundleError(str(error)) from None
    except ValueError as error:
        raise BundleError(f"{manifest_path}: not valid JSON ({error})") from None
    validate_manifest(manifest, str(manifest_path))
    root = directory.resolve()
    for name in manifest["files"]:
        path = directory / name
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise BundleError(f"{directory}: {name} is a link or points outside the bundle; refusing it")
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is listed in the manifest but missing")
        if not (defer_model and name == manifest["model"]):
            _check_sha256(directory, name, sha256_file(path), manifest)
    return manifest


def _refuse_unlisted_external_data(directory: Path, manifest: dict) -> None:
    """An ONNX tensor stored in another file is read by ONNX Runtime: that file must be listed (so hashed)."""
    from edgetune_runtime.external_data import MalformedModel, external_data_files, resolve_location

    model_name = manifest["model"]
    try:
        tensors = external_data_files(directory / model_name)
    except MalformedModel as error:
        raise BundleError(f"{directory / model_name}: ONNX Runtime cannot load the model (it is not an ONNX "
                          f"protobuf: {error})") from None
    for tensor, location in tensors:
        name = resolve_location(model_name, location)
        if name is None or name not in manifest["files"]:
            raise BundleError(f"{directory / model_name}: tensor {tensor!r} reads external data from "
                              f"{location!r}, which the manifest does not list; refusing the bundle "
                              "(rebuild it with `edgetune bundle`, which lists and hashes every file)")


def _check_sha256(directory: Path, name: str, actual: str, manifest: dict) -> None:
    if actual != manifest["files"][name]:
        raise BundleError(f"{directory}: {name} does not match its sha256 in the manifest (changed or corrupt)")
