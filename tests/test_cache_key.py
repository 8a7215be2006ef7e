"""A stage's cache key covers every project module its code imports, and nothing else.

The keys are computed over an edited copy of the real source tree: a comment appended to one file
must change the key of every stage that imports it (so no stale output survives a code change) and
of no other stage (so an unrelated edit does not re-run a 20-minute fine-tune).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgetune
import edgetune_runtime
from edgetune.recipes.cache_key import code_version, code_version_of
from edgetune.recipes.code_imports import PROJECT_PACKAGES, CodeRoot, SourceTree, imported_modules
from edgetune.recipes.stages import STAGES


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> SourceTree:
    """A copy of the project's source, at another path, for tests to edit."""
    root = tmp_path_factory.mktemp("source")
    packages = []
    for package in (edgetune, edgetune_runtime):
        folder = Path(package.__file__).parent
        shutil.copytree(folder, root / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
        packages.append((folder.name, root / folder.name))
    return SourceTree(tuple(packages))


def _versions(tree: SourceTree) -> dict[str, str]:
    return {kind: code_version_of(spec.code_roots(), tree) for kind, spec in STAGES.items()}


def _stages_changed_by_editing(tree: SourceTree, module: str, before: dict[str, str]) -> set[str]:
    path = tree.module_files()[module]
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit that changes no behaviour\n")
        after = _versions(tree)
    finally:
        path.write_bytes(original)
    return {kind for kind in STAGES if after[kind] != before[kind]}


def test_the_key_does_not_depend_on_where_the_source_is(source_copy):
    assert _versions(source_copy) == {kind: code_version(kind) for kind in STAGES}


@pytest.mark.parametrize(("module", "stages"), [
    # The faults of issue 14: code these stages run that the hand-written lists missed. The task module
    # (edgetune.tasks.classification) names every stage's classification code, so each stage that
    # dispatches through it counts all of it: never stale, at the price of re-running on any edit there.
    # `tune` runs every training, export, quantisation and bundle function in its trials, so it counts them all.
    ("edgetune.finetune.metrics", {"finetune", "distill", "export", "quantize", "bundle", "tune"}),
    ("edgetune_runtime.session", {"finetune", "distill", "export", "quantize", "bundle", "bench", "tune"}),
    ("edgetune.onnx_session", {"finetune", "distill", "export", "quantize", "bundle", "tune"}),
    ("edgetune.distill.student", {"finetune", "distill", "tune"}),
    # And edits that must not re-run unrelated stages.
    ("edgetune.distill.teacher_logits", {"distill", "tune"}),
    ("edgetune.bundle.card", {"bundle", "tune"}),
    ("edgetune.quantize.variants", {"quantize", "tune"}),
    ("edgetune_runtime.bench", {"bench"}),
])
def test_an_edited_module_changes_exactly_the_stages_that_import_it(source_copy, module, stages):
    assert _stages_changed_by_editing(source_copy, module, _versions(source_copy)) == stages


def test_every_module_changes_the_keys_of_the_stages_that_import_it_and_no_other(source_copy):
    before = _versions(source_copy)
    closures = {kind: set(imported_modules(spec.code_roots(), source_copy)) for kind, spec in STAGES.items()}
    for module in sorted(source_copy.module_files()):
        expected = {kind for kind, closure in closures.items() if module in closure}
        assert _stages_changed_by_editing(source_copy, module, before) == expected, module
    assert _versions(source_copy) == before


def test_every_project_module_a_stage_loads_is_in_its_key():
    """Independent of the import reader: import each stage's code in a fresh interpreter and compare
    the project modules Python actually loaded with the ones the key hashes."""
    script = ("import importlib, json, sys\n"
              "for name in sys.argv[1:]: importlib.import_module(name)\n"
              f"print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] in {PROJECT_PACKAGES!r})))")
    tree = SourceTree.installed()
    for kind, spec in STAGES.items():
        roots = [spec.function.split(":")[0], spec.config_class.__module__]
        loaded = subprocess.run([sys.executable, "-c", script, *roots], capture_output=True, text=True, check=True,
                                timeout=120, env=os.environ)
        missing = set(json.loads(loaded.stdout)) - set(imported_modules(spec.code_roots(), tree))
        assert not missing, f"{kind}: loads {sorted(missing)} but its key does not hash them"


def test_keys_are_the_same_in_every_process():
    """Sets iterate in a per-process order (hash randomisation): the key must not."""
    script = ("import json; from edgetune.recipes.cache_key import code_version; "
              f"print(json.dumps({{kind: code_version(kind) for kind in {list(STAGES)!r}}}))")
    for seed in ("1", "2"):
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                               timeout=120, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(other.stdout) == {kind: code_version(kind) for kind in STAGES}


def _write(folder: Path, files: dict[str, str]) -> SourceTree:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return SourceTree((("edgetune", folder / "edgetune"), ("edgetune_runtime", folder / "edgetune_runtime")))


def test_every_form_of_import_is_followed(tmp_path):
    tree = _write(tmp_path, {
        "edgetune/__init__.py": "",
        "edgetune/stage.py": ("import json\nimport edgetune.top_level\nfrom . import relative_sibling\n"
                              "from .pkg import sub\n\n"
                              "def run():\n    from edgetune.inside_function import thing\n"
                              "    import importlib\n    importlib.import_module('edgetune.by_import_module')\n"
                              "    return 'edgetune.by_reference:build'\n"),
        "edgetune/top_level.py": "from edgetune_runtime.deep import value\n",
        "edgetune/relative_sibling.py": "from .pkg.sub import helper\n",
        "edgetune/pkg/__init__.py": "from ..package_init_import import x\n",
        "edgetune/pkg/sub.py": "",
        "edgetune/package_init_import.py": "",
        "edgetune/inside_function.py": "",
        "edgetune/by_import_module.py": "",
        "edgetune/by_reference.py": "",
        "edgetune/never_imported.py": "import edgetune.stage\n",
        "edgetune_runtime/__init__.py": "",
        "edgetune_runtime/deep.py": "import edgetune_runtime.deeper\n",
        "edgetune_runtime/deeper.py": "",
        "edgetune_runtime/unused.py": "",
    })
    assert set(imported_modules((CodeRoot("edgetune.stage"),), tree)) == {
        "edgetune", "edgetune.stage", "edgetune.top_level", "edgetune.relative_sibling", "edgetune.pkg",
        "edgetune.pkg.sub", "edgetune.package_init_import", "edgetune.inside_function",
        "edgetune.by_import_module", "edgetune.by_reference", "edgetune_runtime", "edgetune_runtime.deep",
        "edgetune_runtime.deeper"}


def test_a_function_root_follows_that_function_only(tmp_path):
    """The registry imports every stage's config to list them; a stage's adapter uses only its own."""
    tree = _write(tmp_path, {
        "edgetune/__init__.py": "",
        "edgetune/registry.py": ("from edgetune.config_a import ConfigA\nfrom edgetune.config_b import ConfigB\n"
                                 "import edgetune.used_by_helper as helper_module\n\n"
                                 "def adapter_a(call):\n    from edgetune.lazy_a import go\n"
                                 "    return helper(ConfigA)\n\n"
                                 "def helper(x):\n    return helper_module.f(x)\n\n"
                                 "def adapter_b(call):\n    return ConfigB\n"),
        "edgetune/config_a.py": "", "edgetune/config_b.py": "", "edgetune/lazy_a.py": "",
        "edgetune/used_by_helper.py": "",
        "edgetune_runtime/__init__.py": "",
    })
    assert set(imported_modules((CodeRoot("edgetune.registry", "adapter_a"),), tree)) == {
        "edgetune", "edgetune.registry", "edgetune.config_a", "edgetune.lazy_a", "edgetune.used_by_helper"}
    assert set(imported_modules((CodeRoot("edgetune.registry", "adapter_b"),), tree)) == {
        "edgetune", "edgetune.registry", "edgetune.config_b"}
