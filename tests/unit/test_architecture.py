"""The layer rule of ``docs/architecture.md``, enforced on the source (parsed with ``ast``,
never imported, so a violation cannot hide behind an import error or a side effect).

Every module of ``schemas/``, ``hub/``, ``connectors/``, ``projections/`` and ``bench/`` is
checked; a failure names the file, the line and the imported module. The rules:

``layer``
    A module imports only modules of its own layer or of a lower one (:data:`LAYERS`, lowest
    first). Layers on the same level are siblings and never import each other:
    ``connectors`` and ``projections`` meet only in the event log (``schemas`` contract,
    ``hub.kernel`` log), and ``hub.entry.api`` and ``hub.devtools`` only in the composition
    root. Nothing imports ``bench``.
``devtools``
    No production module (anything but ``hub.devtools.*``, ``hub.entry.cli`` and ``bench``)
    imports ``hub.devtools``.
``cycle``
    No file-level import cycle. The graph holds every executed import (module level,
    function level, and ``importlib.import_module``/``__import__`` of a literal name); a
    ``TYPE_CHECKING`` block is not executed and is left out. The implicit import of a
    parent package (``a.b`` runs ``a/__init__.py`` first) is not an edge: a package
    ``__init__`` that re-exports its submodules is not a cycle.
``local-import``
    Imports sit at module level (inside ``if TYPE_CHECKING:`` is fine), except the entries of
    :data:`LOCAL_IMPORTS_ALLOWED`, each with its reason.
``dynamic-import``
    No ``importlib.import_module``/``__import__`` of a hub module, nor of a name the source does
    not spell out; no ``pkgutil`` scan of a package. Parts are listed in explicit registries
    (``hub/bootstrap.py``, ``connectors/registry.py``).

:data:`KNOWN_UNTIL_MERGED` lists the violations that other renovation branches remove; an
entry that no longer occurs fails the test too, so the set is emptied as they merge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from hub.kernel.settings import PROJECT_ROOT

#: the packages whose modules are checked
PACKAGES = ("schemas", "hub", "connectors", "projections", "bench")

#: the layers, lowest first; the names on one level are siblings (they never import each other)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("schemas",),
    ("hub.kernel",),
    ("connectors", "projections"),
    ("hub.bootstrap",),
    ("hub.entry.api", "hub.devtools"),
    ("hub.entry.commands",),
    ("hub.entry.cli",),
    ("bench",),
)

#: package ``__init__`` modules above the layers: they import nothing, anyone may import them
PACKAGE_MARKERS = frozenset({"hub", "hub.entry"})

#: the modules that may import ``hub.devtools`` (besides ``hub.devtools`` itself)
DEVTOOLS_USERS = ("hub.devtools", "hub.entry.cli", "bench")

#: (file, imported module) -> why this import cannot sit at module level. Keep it empty.
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}

#: (rule, file, subject) of violations other branches of the renovation remove. Empty it as
#: they merge: an entry that no longer occurs fails :func:`test_source_tree_keeps_the_layer_rule`.
KNOWN_UNTIL_MERGED: frozenset[tuple[str, str, str]] = frozenset()

#: calls that import a module by name, and calls that find modules by scanning a package
_IMPORT_FUNCTIONS = frozenset({"importlib.import_module", "import_module", "__import__",
                               "importlib.__import__"})
_SCAN_FUNCTIONS = frozenset({"pkgutil.iter_modules", "pkgutil.walk_packages", "iter_modules",
                             "walk_packages"})


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Import:
    """One import of a first-party module: who, where, what, and how it runs."""

    importer: str  # dotted module name
    path: str  # repository-relative file
    line: int
    target: str  # dotted module name, resolved to a module of the tree
    kind: str  # "module" | "local" | "type-checking" | "dynamic"


@dataclass(frozen=True)
class Violation:
    rule: str
    path: str
    line: int
    subject: str  # the imported module, the call, or the cycle
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Line-free identity (stable while other branches edit the same file)."""
        return (self.rule, self.path, self.subject)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


@dataclass
class Tree:
    """The parsed source: every module's file, its first-party imports, and the violations
    found while parsing (local and dynamic imports)."""

    paths: dict[str, str]  # module -> file
    imports: list[Import]
    found: list[Violation]


def module_name(path: str) -> str:
    """``hub/kernel/log.py`` -> ``hub.kernel.log``; ``hub/kernel/__init__.py`` -> ``hub.kernel``."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def resolve(name: str, modules: Iterable[str]) -> str:
    """The longest prefix of ``name`` that is a module of the tree (``name`` itself when none
    is: a module that does not exist yet is still an import of it)."""
    known = set(modules)
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def layer_of(module: str) -> str | None:
    """The layer a module belongs to (longest matching layer name), None for a package marker
    or a module outside every layer."""
    best = None
    for level in LAYERS:
        for name in level:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
                best = name
    return best


def level_of(layer: str) -> int:
    return next(i for i, level in enumerate(LAYERS) if layer in level)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Scanner(ast.NodeVisitor):
    """Collects the imports of one module with their kind, and the forbidden calls."""

    def __init__(
        self, module: str, path: str, is_package: bool, allowed: Mapping[tuple[str, str], str]
    ) -> None:
        self.module, self.path, self.is_package, self.allowed = module, path, is_package, allowed
        self.raw: list[tuple[int, str, tuple[str, ...], str]] = []  # line, module, names, kind
        self.found: list[Violation] = []
        self._depth = 0  # inside a function, lambda or class body
        self._type_checking = 0

    def _scoped(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _scoped

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _kind(self) -> str:
        if self._type_checking:
            return "type-checking"
        return "local" if self._depth else "module"

    def _record(self, node: ast.stmt, module: str, names: tuple[str, ...]) -> None:
        kind = self._kind()
        self.raw.append((node.lineno, module, names, kind))
        if kind == "local" and (self.path, module) not in self.allowed:
            self.found.append(Violation(
                "local-import", self.path, node.lineno, module,
                f"imports {module} inside a function or class: hoist it to module level "
                "(or justify it in LOCAL_IMPORTS_ALLOWED)",
            ))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._record(node, alias.name, ())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = self.module.split(".")
            if not self.is_package:
                package.pop()
            package = package[: len(package) - (node.level - 1)]
            module = ".".join([*package, module] if module else package)
        self._record(node, module, tuple(a.name for a in node.names))

    def visit_Call(self, node: ast.Call) -> None:
        called = ast.unparse(node.func)
        if called in _IMPORT_FUNCTIONS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if first_party(arg.value):
                    self.raw.append((node.lineno, arg.value, (), "dynamic"))
                    self.found.append(Violation(
                        "dynamic-import", self.path, node.lineno, arg.value,
                        f"imports {arg.value} by name ({called}): import it, or list it in a registry",
                    ))
            else:
                subject = ast.unparse(arg)
                self.found.append(Violation(
                    "dynamic-import", self.path, node.lineno, subject,
                    f"imports a module named at run time ({called}({subject})): use an explicit registry",
                ))
        elif called in _SCAN_FUNCTIONS:
            self.found.append(Violation(
                "module-scan", self.path, node.lineno, "pkgutil." + called.split(".")[-1],
                f"finds modules by scanning a package ({called}): use an explicit registry",
            ))
        self.generic_visit(node)


def scan(sources: Mapping[str, str], allowed: Mapping[tuple[str, str], str] | None = None) -> Tree:
    """Parse ``{repository-relative file: source}`` (pure: no file is read, nothing imported).
    ``allowed``: the local imports to accept (default :data:`LOCAL_IMPORTS_ALLOWED`)."""
    paths = {module_name(p): p for p in sources}
    imports: list[Import] = []
    found: list[Violation] = []
    for path, source in sorted(sources.items()):
        module = module_name(path)
        scanner = _Scanner(module, path, path.endswith("__init__.py"),
                           LOCAL_IMPORTS_ALLOWED if allowed is None else allowed)
        scanner.visit(ast.parse(source, filename=path))
        found += scanner.found
        for line, name, names, kind in scanner.raw:
            if not first_party(name):
                continue
            targets = [f"{name}.{n}" for n in names if f"{name}.{n}" in paths]  # from pkg import module
            if len(targets) < len(names) or not names:
                targets.append(resolve(name, paths))
            imports += [Import(module, path, line, t, kind) for t in dict.fromkeys(targets)]
    return Tree(paths, imports, found)


# --------------------------------------------------------------------------- the rules


def layer_violations(tree: Tree) -> Iterator[Violation]:
    for imp in tree.imports:
        if imp.target == imp.importer:
            continue
        here, there = layer_of(imp.importer), layer_of(imp.target)
        if imp.importer in PACKAGE_MARKERS:
            yield Violation("layer", imp.path, imp.line, imp.target,
                            f"package marker {imp.importer} imports {imp.target}: it must import nothing")
            continue
        if here is None:
            yield Violation("layer", imp.path, imp.line, imp.target,
                            f"{imp.importer} belongs to no layer (add it to LAYERS in this test and "
                            "to docs/architecture.md)")
            continue
        if there is None or there == here:  # a package marker, or the same layer
            continue
        if there == "bench":
            yield Violation("layer", imp.path, imp.line, imp.target,
                            f"{imp.importer} imports {imp.target}: nothing imports bench")
        elif level_of(there) == level_of(here):
            yield Violation("layer", imp.path, imp.line, imp.target,
                            f"{imp.importer} ({here}) imports {imp.target} ({there}): sibling layers "
                            "never import each other")
        elif level_of(there) > level_of(here):
            yield Violation("layer", imp.path, imp.line, imp.target,
                            f"{imp.importer} ({here}) imports {imp.target} ({there}), a higher layer")


def devtools_violations(tree: Tree) -> Iterator[Violation]:
    for imp in tree.imports:
        user = any(imp.importer == u or imp.importer.startswith(u + ".") for u in DEVTOOLS_USERS)
        if not user and (imp.target == "hub.devtools" or imp.target.startswith("hub.devtools.")):
            yield Violation("devtools", imp.path, imp.line, imp.target,
                            f"production module {imp.importer} imports {imp.target} (development tooling)")


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative), components in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def _shortest_cycle(start: str, members: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path ``start -> ... -> start`` inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def cycle_violations(tree: Tree) -> Iterator[Violation]:
    graph: dict[str, set[str]] = {m: set() for m in tree.paths}
    first_edge: dict[tuple[str, str], Import] = {}
    for imp in tree.imports:
        if imp.kind == "type-checking" or imp.target not in tree.paths:
            continue
        graph[imp.importer].add(imp.target)
        first_edge.setdefault((imp.importer, imp.target), imp)
    for component in _strongly_connected(graph):
        start = component[0]
        if len(component) == 1 and start not in graph[start]:
            continue
        cycle = _shortest_cycle(start, set(component), graph)
        edge = first_edge[(cycle[0], cycle[1])]
        shown = " -> ".join(cycle)
        yield Violation("cycle", edge.path, edge.line, shown,
                        f"import cycle {shown} (module graph of {len(component)} modules)")


def check(tree: Tree) -> list[Violation]:
    """Every violation of the layer rule in ``tree``, in file order."""
    found = [*tree.found, *layer_violations(tree), *devtools_violations(tree), *cycle_violations(tree)]
    return sorted(found, key=lambda v: (v.path, v.line, v.rule, v.subject))


def source_tree() -> dict[str, str]:
    return {
        p.relative_to(PROJECT_ROOT).as_posix(): p.read_text(encoding="utf-8")
        for package in PACKAGES
        for p in sorted((PROJECT_ROOT / package).rglob("*.py"))
    }


# --------------------------------------------------------------------------- the tests


def test_source_tree_keeps_the_layer_rule() -> None:
    found = check(scan(source_tree()))
    new = [str(v) for v in found if v.key not in KNOWN_UNTIL_MERGED]
    assert not new, "layer rule broken (see docs/architecture.md):\n" + "\n".join(new)
    gone = sorted(KNOWN_UNTIL_MERGED - {v.key for v in found})
    assert not gone, f"fixed: remove these from KNOWN_UNTIL_MERGED: {gone}"


def test_every_module_is_in_a_layer() -> None:
    modules = scan(source_tree()).paths
    assert {"schemas", "hub.kernel.log", "hub.bootstrap", "hub.entry.cli", "bench"} <= set(modules)
    homeless = sorted(m for m in modules if m not in PACKAGE_MARKERS and layer_of(m) is None)
    assert not homeless, f"modules outside every layer of LAYERS: {homeless}"


def test_local_import_allow_list_is_justified() -> None:
    assert all(reason.strip() for reason in LOCAL_IMPORTS_ALLOWED.values()), LOCAL_IMPORTS_ALLOWED


#: one file per rule broken (and a few that look alike but are fine)
SYNTHETIC = {
    "schemas/__init__.py": "",
    "schemas/base.py": "import pydantic\n",
    "hub/__init__.py": "from hub.kernel import log\n",
    "hub/misc.py": "import schemas\n",
    "hub/kernel/__init__.py": "",
    "hub/kernel/log.py": "from schemas import base\nfrom connectors.cad import mapping\n",
    "connectors/__init__.py": "",
    "connectors/cad/__init__.py": "",
    "connectors/cad/mapping.py": (
        "from typing import TYPE_CHECKING\n"
        "from schemas.base import X\n"
        "if TYPE_CHECKING:\n"
        "    from connectors.cad.soql import Source\n"
        "def f():\n"
        "    from projections import fold\n"
    ),
    "connectors/cad/soql.py": "import importlib\nimportlib.import_module('connectors.cad.mapping')\n",
    "connectors/registry.py": (
        "import importlib, pkgutil, connectors\n"
        "for info in pkgutil.iter_modules(connectors.__path__):\n"
        "    importlib.import_module(f'connectors.{info.name}.components')\n"
        "importlib.import_module('yaml')\n"
    ),
    "projections/__init__.py": "",
    "projections/fold.py": "from hub.devtools.simulate import model\nimport bench\n",
    "hub/bootstrap.py": "",
    "hub/entry/__init__.py": "",
    "hub/entry/api/__init__.py": "",
    "hub/entry/api/app.py": "",
    "hub/devtools/__init__.py": "",
    "hub/devtools/demo.py": "from hub.entry.api import app\nfrom hub.bootstrap import open_runtime\n",
    "hub/entry/commands/__init__.py": "",
    "hub/entry/commands/report.py": "from hub.devtools import demo\nfrom hub.entry import cli\n",
    "hub/entry/cli.py": "from hub.devtools import demo\nfrom hub.entry.commands import report\n",
    "bench/__init__.py": "from hub.devtools import demo\nfrom hub.entry import cli\n",
}


def test_checker_reports_each_rule_with_file_line_and_module() -> None:
    found = check(scan(SYNTHETIC))
    assert {(v.rule, v.path, v.line, v.subject) for v in found} == {
        ("layer", "hub/__init__.py", 1, "hub.kernel.log"),  # a package marker imports nothing
        ("layer", "hub/misc.py", 1, "schemas"),  # outside every layer
        ("layer", "hub/kernel/log.py", 2, "connectors.cad.mapping"),  # a higher layer
        ("layer", "connectors/cad/mapping.py", 6, "projections.fold"),  # a sibling layer
        ("local-import", "connectors/cad/mapping.py", 6, "projections"),
        ("dynamic-import", "connectors/cad/soql.py", 2, "connectors.cad.mapping"),  # a literal name
        ("module-scan", "connectors/registry.py", 2, "pkgutil.iter_modules"),
        ("dynamic-import", "connectors/registry.py", 3, "f'connectors.{info.name}.components'"),
        ("layer", "projections/fold.py", 1, "hub.devtools"),
        ("devtools", "projections/fold.py", 1, "hub.devtools"),
        ("layer", "projections/fold.py", 2, "bench"),  # nothing imports bench
        ("devtools", "hub/entry/commands/report.py", 1, "hub.devtools.demo"),  # allowed by layer only
        ("layer", "hub/entry/commands/report.py", 2, "hub.entry.cli"),
        ("layer", "hub/devtools/demo.py", 1, "hub.entry.api.app"),  # a sibling layer
        # soql -> mapping (dynamic) -> soql (TYPE_CHECKING only) is no cycle; this one is
        ("cycle", "hub/entry/cli.py", 2, "hub.entry.cli -> hub.entry.commands.report -> hub.entry.cli"),
    }
    shown = "\n".join(map(str, found))
    assert "hub/kernel/log.py:2: [layer] hub.kernel.log (hub.kernel) imports connectors.cad.mapping" in shown


def test_checker_finds_longer_cycles_and_honours_the_allow_list() -> None:
    sources = {
        "connectors/__init__.py": "",
        "connectors/a.py": "import connectors.b\n",
        "connectors/b.py": "def f():\n    from connectors import c\n",
        "connectors/c.py": "import importlib\nimportlib.__import__('connectors.a')\n",
        "connectors/d.py": "import connectors.d\n",
    }
    allowed = {("connectors/b.py", "connectors"): "a reason"}
    found = {(v.rule, v.path, v.subject) for v in check(scan(sources, allowed))}
    assert found == {
        ("cycle", "connectors/a.py", "connectors.a -> connectors.b -> connectors.c -> connectors.a"),
        ("cycle", "connectors/d.py", "connectors.d -> connectors.d"),
        ("dynamic-import", "connectors/c.py", "connectors.a"),
    }
