"""Which of the project's modules a piece of code runs, found by reading the imports in its source.

A stage's cache key hashes exactly these files, so a change to any code the stage can run re-runs it,
and a change elsewhere does not. The source is read with `ast`, never imported: every `import` and
`from ... import` counts, at module level and inside functions (the toolchain keeps heavy imports in
function bodies), relative ones too, followed transitively; so do `importlib.import_module("...")`
with a literal name and `"package.module:name"` strings (how registries name code they load later).
Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` first, so those count as well.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from edgetune_runtime.hashing import sha256_bytes

PROJECT_PACKAGES = ("edgetune", "edgetune_runtime")

# "edgetune.finetune.train:finetune": how the stage registry and the task registries name code they
# import on demand. Only names inside the project's packages can match.
_CODE_REFERENCE = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class SourceTree:
    """Where the source folder of each of the project's top-level packages is."""

    packages: tuple[tuple[str, Path], ...]
    """(top-level package name, its folder), e.g. ("edgetune", .../toolchain/edgetune)."""

    @classmethod
    def installed(cls) -> SourceTree:
        """The packages this process imports (the checkout for an editable install)."""
        import importlib.util

        folders = []
        for name in PROJECT_PACKAGES:
            spec = importlib.util.find_spec(name)  # locates the package without importing it
            if spec is None or spec.origin is None:
                raise RuntimeError(f"package {name!r} not found; install edgetune and edgetune-runtime")
            folders.append((name, Path(spec.origin).parent))
        return cls(tuple(folders))

    def file_of(self, module: str) -> Path | None:
        """The source file of `module` (a package's `__init__.py`), or None outside the project."""
        top, _, rest = module.partition(".")
        folder = dict(self.packages).get(top)
        if folder is None:
            return None
        base = folder.joinpath(*rest.split(".")) if rest else folder
        for candidate in (base / "__init__.py", base.with_name(base.name + ".py")):
            if candidate.is_file():
                return candidate
        return None

    def module_files(self) -> dict[str, Path]:
        """Every module of the project, by name."""
        modules = {}
        for top, folder in self.packages:
            for path in folder.rglob("*.py"):
                parts = path.relative_to(folder).with_suffix("").parts
                name = ".".join((top, *(parts[:-1] if parts[-1] == "__init__" else parts)))
                modules[name] = path
        return modules


@dataclass(frozen=True)
class CodeRoot:
    """Where following imports starts: a whole module, or one function of it."""

    module: str
    function: str | None = None
    """Follow only this top-level function: the imports in its body, the module-level imports whose
    names it uses and the same-module functions it calls. The whole module's text is still hashed."""


def imported_modules(roots: tuple[CodeRoot, ...], tree: SourceTree) -> tuple[str, ...]:
    """Every project module the roots import, directly or not, the roots included; sorted."""
    found: set[str] = set()  # files hashed
    followed: set[str] = set()  # modules whose every import has been (or will be) followed
    pending: list[str] = []

    def add(module: str) -> None:
        for name in _with_parents(module):
            if name not in followed and tree.file_of(name) is not None:
                found.add(name)
                followed.add(name)
                pending.append(name)

    for root in roots:
        path = tree.file_of(root.module)
        if path is None:
            raise RuntimeError(f"stage code {root.module!r} not found under {dict(tree.packages)}")
        if root.function is None:
            add(root.module)
            continue
        for parent in _with_parents(root.module)[:-1]:
            add(parent)
        found.add(root.module)
        for target in _function_imports(root.module, path.name == "__init__.py", path.read_bytes(), root.function):
            add(target)
    while pending:
        module = pending.pop()
        path = tree.file_of(module)
        for target in _module_imports(module, path.name == "__init__.py", path.read_bytes()):
            add(target)
    return tuple(sorted(found))


def source_digest(modules: tuple[str, ...], tree: SourceTree) -> str:
    """sha256 of the modules' names and source text: the same code gives the same digest on any machine."""
    chunks = []
    for module in sorted(modules):
        chunks.append(module.encode() + b"\0" + tree.file_of(module).read_bytes() + b"\0")
    return sha256_bytes(b"".join(chunks))


def _with_parents(module: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs its parent packages first."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _in_project(module: str) -> bool:
    return module.partition(".")[0] in PROJECT_PACKAGES


@cache
def _module_imports(module: str, is_package: bool, source: bytes) -> frozenset[str]:
    """Names (modules, or `module.attribute` that may be a submodule) anything in `source` imports.

    Cached by content, so a process reads each version of a file once.
    """
    return frozenset(_imports_in(ast.walk(_parse(module, source)), module, is_package))


@cache
def _function_imports(module: str, is_package: bool, source: bytes, function: str) -> frozenset[str]:
    tree = _parse(module, source)
    top_level = {node.name: node for node in tree.body
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    if function not in top_level:
        raise RuntimeError(f"{module} has no top-level function {function!r} to follow the imports of")
    bindings = _module_level_bindings(tree, module, is_package)
    imports: set[str] = set()
    seen: set[str] = set()
    queue = [function]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        nodes = list(ast.walk(top_level[name]))
        imports.update(_imports_in(nodes, module, is_package))
        for used in {node.id for node in nodes if isinstance(node, ast.Name)}:
            imports.update(bindings.get(used, ()))
            if used in top_level:
                queue.append(used)  # a helper in the same module runs too
    return frozenset(imports)


def _parse(module: str, source: bytes) -> ast.Module:
    try:
        return ast.parse(source, filename=module)
    except SyntaxError as error:  # the stage could not run either; say where
        raise RuntimeError(f"cannot read the imports of {module}: {error}") from None


def _imports_in(nodes, module: str, is_package: bool) -> set[str]:
    imports: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if base:
                # `from package import name`: name may be a submodule; `add` keeps it only if it is one.
                imports.add(base)
                imports.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                imports.add(argument.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            reference = _CODE_REFERENCE.match(node.value)
            if reference:
                imports.add(reference["module"])
    return {name for name in imports if _in_project(name)}


def _module_level_bindings(tree: ast.Module, module: str, is_package: bool) -> dict[str, set[str]]:
    """Name bound by a module-level import -> the modules that import may run."""
    bindings: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.partition(".")[0]
                bindings.setdefault(bound, set()).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                if base:
                    bindings.setdefault(alias.asname or alias.name, set()).update({base, f"{base}.{alias.name}"})
    return bindings


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module name of `from X import ...`, relative forms resolved against `module`."""
    if node.level == 0:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None  # beyond the top-level package: Python refuses it too
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_import_module(function: ast.expr) -> bool:
    return (isinstance(function, ast.Name) and function.id in ("import_module", "__import__")) or (
        isinstance(function, ast.Attribute) and function.attr == "import_module")
